"""Plugin keys voicecall does not implement: refused at start-up, never accepted and ignored.

A pasted plugin config must not look like it works when it does not. Each key below is
refused with `<path> is not supported by voicecall` when it is set to a value that asks
for behaviour we do not have; the plugin's own default (or a value that turns the feature
off) is accepted, because it asks for nothing and users copy it from the plugin's sample
configs. The decision per key, and why: docs/plugin-behaviour.md, "Keys voicecall refuses".

The `tts` keys are checked in the plugin's own `tts` block and in each `numbers.<n>.tts`,
not in a whole document's `messages.tts`: that block is the core's chat speech config,
whose chat-only keys (auto-replies as audio, summaries, user prefs) belong to the core and
are never read here; only its providers, voices and limits are merged in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

NOT_SUPPORTED = " is not supported by voicecall"

Neutral = Callable[[Any], bool]  # True: the value asks for nothing we lack


def _never(value: Any) -> bool:
    return False


def _equals(*accepted: Any) -> Neutral:
    return lambda value: any(value == item and type(value) is type(item) for item in accepted)


def _switched_off(value: Any) -> bool:
    """A feature block whose `enabled` is not true (its other keys then do nothing)."""
    return isinstance(value, Mapping) and value.get("enabled") is not True


def _no_overrides(value: Any) -> bool:
    """modelOverrides that let the model override nothing: we parse no voice directives."""
    if not isinstance(value, Mapping):
        return False
    return value.get("enabled") is False or not any(item is True for item in value.values())


# Keys of a tts block (plugin `tts`, `numbers.<n>.tts`) and what is neutral for each.
_TTS: dict[str, Neutral] = {
    "auto": _equals("off"),  # chat replies as audio: calls always speak
    "enabled": _equals(True),  # calls cannot go without speech
    "mode": _equals("final"),  # which chat replies get audio
    "summaryModel": _never,  # long text summarised by a model: we bound it instead
    "modelOverrides": _no_overrides,  # [[tts:…]] directives in model text
    "prefsPath": _never,  # per-user chat voice preferences
}

# Top-level and realtime keys, by path.
_KEYS: dict[tuple[str, ...], Neutral] = {
    ("store",): _never,  # the plugin's call-record directory: history is in the database
    ("silenceTimeoutMs",): _equals(800),  # unused in the plugin too; 800 is its default
    ("realtime", "tools"): _equals([]),  # no handler would run them
    ("realtime", "toolPolicy"): _equals("safe-read-only", "none"),  # consult agent's tools
    ("realtime", "consultPolicy"): _equals("auto"),
    ("realtime", "consultThinkingLevel"): _never,
    ("realtime", "consultFastMode"): _equals(False),
    ("realtime", "fastContext"): _switched_off,
    ("realtime", "agentContext"): _switched_off,
}


def unsupported_errors(plugin: Mapping[str, Any]) -> list[str]:
    """`<path> is not supported by voicecall` for each refused key of the plugin object.

    `plugin` is the plugin's own object before defaults fill in and before its `tts` is
    merged over messages.tts, so only what the user wrote is judged.
    """
    errors = [
        f"{'.'.join(path)}{NOT_SUPPORTED}"
        for path, neutral in _KEYS.items()
        if _refused(_value_at(plugin, path), neutral)
    ]
    errors += _tts_errors("tts", plugin.get("tts"))
    numbers = plugin.get("numbers")
    if isinstance(numbers, Mapping):
        for number, route in numbers.items():
            if isinstance(route, Mapping):
                errors += _tts_errors(f"numbers.{number}.tts", route.get("tts"))
    return errors


def _tts_errors(prefix: str, block: Any) -> list[str]:
    if not isinstance(block, Mapping):
        return []
    return [
        f"{prefix}.{key}{NOT_SUPPORTED}"
        for key, neutral in _TTS.items()
        if _refused(block.get(key), neutral)
    ]


def _refused(value: Any, neutral: Neutral) -> bool:
    return value is not None and not neutral(value)  # null means unset


def _value_at(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node
