"""Plugin keys voicecall does not implement: refused at start-up with one line naming the
path, never accepted and ignored; the plugin's defaults (which ask for nothing) load.

docs/plugin-behaviour.md, "Keys voicecall refuses".
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from calls.config import ConfigError, parse_config, reset_config

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"store": "~/.openclaw/voice-calls"}, "store"),
    ({"silenceTimeoutMs": 1500}, "silenceTimeoutMs"),
    ({"tts": {"auto": "always"}}, "tts.auto"),
    ({"tts": {"enabled": False}}, "tts.enabled"),
    ({"tts": {"mode": "all"}}, "tts.mode"),
    ({"tts": {"summaryModel": "openai/gpt-4o-mini"}}, "tts.summaryModel"),
    ({"tts": {"modelOverrides": {"enabled": True}}}, "tts.modelOverrides"),
    ({"tts": {"modelOverrides": {"allowVoice": True}}}, "tts.modelOverrides"),
    ({"tts": {"prefsPath": "~/.openclaw/tts.json"}}, "tts.prefsPath"),
    ({"realtime": {"tools": [{"type": "function", "name": "lookup"}]}}, "realtime.tools"),
    ({"realtime": {"toolPolicy": "owner"}}, "realtime.toolPolicy"),
    ({"realtime": {"consultPolicy": "always"}}, "realtime.consultPolicy"),
    ({"realtime": {"consultThinkingLevel": "high"}}, "realtime.consultThinkingLevel"),
    ({"realtime": {"consultFastMode": True}}, "realtime.consultFastMode"),
    ({"realtime": {"fastContext": {"enabled": True}}}, "realtime.fastContext"),
    ({"realtime": {"agentContext": {"enabled": True}}}, "realtime.agentContext"),
    (
        {"numbers": {"+15550001234": {"tts": {"summaryModel": "m"}}}},
        "numbers.+15550001234.tts.summaryModel",
    ),
]

NEUTRAL: list[dict[str, Any]] = [
    {"silenceTimeoutMs": 800},
    {"store": None},
    {"tts": {"auto": "off", "enabled": True, "mode": "final", "summaryModel": None}},
    {"tts": {"modelOverrides": {"enabled": False, "allowVoice": True}}},
    {"tts": {"modelOverrides": {"allowText": False}}},
    {"realtime": {"tools": [], "toolPolicy": "safe-read-only", "consultPolicy": "auto"}},
    {"realtime": {"toolPolicy": "none", "consultFastMode": False}},
    {"realtime": {"fastContext": {"enabled": False, "maxResults": 5}}},
    {"realtime": {"agentContext": {"files": ["SOUL.md"]}}},
]


@pytest.mark.parametrize(("raw", "path"), REFUSED, ids=[path for _, path in REFUSED])
def test_a_key_voicecall_does_not_implement_is_refused_naming_its_path(
    raw: dict[str, Any], path: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})

    assert caught.value.errors == [f"{path} is not supported by voicecall"]


@pytest.mark.parametrize("raw", NEUTRAL, ids=[json.dumps(raw) for raw in NEUTRAL])
def test_the_plugins_defaults_and_switched_off_features_load(raw: dict[str, Any]) -> None:
    parse_config(raw, {})  # no ConfigError


def test_a_routes_tts_takes_only_tts_keys() -> None:
    # A voice outside providers.<id> would be merged and never read: refused, not ignored.
    routes = {"+15550001234": {"tts": {"voice": "nova"}}}

    with pytest.raises(ConfigError) as caught:
        parse_config({"numbers": routes}, {})

    assert caught.value.errors == [
        "plugins.entries.voice-call.config.numbers.+15550001234.tts.voice is not a recognized key"
    ]


def test_every_refused_key_is_named_at_once() -> None:
    raw = {"store": "/tmp/x", "tts": {"summaryModel": "m"}, "realtime": {"toolPolicy": "owner"}}

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})

    assert sorted(caught.value.errors) == [
        "realtime.toolPolicy is not supported by voicecall",
        "store is not supported by voicecall",
        "tts.summaryModel is not supported by voicecall",
    ]


def test_chat_only_keys_of_a_documents_messages_tts_belong_to_the_core() -> None:
    # messages.tts is OpenClaw's chat speech config: its chat keys are not ours to refuse.
    document = {
        "messages": {"tts": {"auto": "always", "summaryModel": "m", "maxTextLength": 500}},
        "plugins": {"entries": {"voice-call": {"config": {"provider": "mock"}}}},
    }

    cfg = parse_config(document, {})

    assert cfg.tts_config.max_text_length == 500  # the limits it shares do apply


def test_the_plugins_own_tts_block_in_a_document_is_still_judged() -> None:
    document = {
        "messages": {"tts": {"auto": "always"}},
        "plugins": {"entries": {"voice-call": {"config": {"tts": {"auto": "inbound"}}}}},
    }

    with pytest.raises(ConfigError) as caught:
        parse_config(document, {})

    assert caught.value.errors == ["tts.auto is not supported by voicecall"]


@pytest.fixture
def config_file(tmp_path: Path) -> Any:
    def write(raw: dict[str, Any]) -> str:
        path = tmp_path / "voicecall.json"
        path.write_text(json.dumps(raw))
        return str(path)

    return write


LINE = "Invalid voice-call config: tts.summaryModel is not supported by voicecall"


@pytest.mark.parametrize(
    "args", [("serve",), ("expose", "--mode", "off"), ("call", "--message", "Hi")]
)
def test_commands_that_load_the_config_refuse_with_one_line(
    config_file: Any, args: tuple[str, ...]
) -> None:
    path = config_file({"tts": {"summaryModel": "openai/gpt-4o-mini"}})
    with override_settings(VOICECALL_CONFIG=path):
        reset_config()
        with pytest.raises(CommandError) as caught:
            call_command("voicecall", *args, stdout=StringIO())

    assert str(caught.value) == LINE


def test_setup_names_the_refused_key(config_file: Any) -> None:
    path = config_file({"tts": {"summaryModel": "openai/gpt-4o-mini"}})
    out = StringIO()
    with override_settings(VOICECALL_CONFIG=path):
        reset_config()
        with pytest.raises(CommandError):
            call_command("voicecall", "setup", "--json", stdout=out)

    checks = {c["id"]: c for c in json.loads(out.getvalue())["checks"]}
    assert checks["provider-config"]["ok"] is False
    assert checks["provider-config"]["message"] == "tts.summaryModel is not supported by voicecall"
