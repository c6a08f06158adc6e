"""The plugin config's key table and its validation, with the plugin's exact error strings.

Every key the config accepts is in `_SPEC` with its check; the defaults live with the typed
sections (calls/config/sections.py), so each is written once. The rules and the sentences:
docs/plugin-behaviour.md, "Config shape and defaults" and "Config errors".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PLUGIN_PATH = "plugins.entries.voice-call.config"
E164_HINT = ": Expected E.164 format, e.g. +15550001234"
SKIP_SIGNATURE_WARNING = (
    "SECURITY WARNING: skipSignatureVerification=true disables webhook signature "
    "verification (development only)"
)
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_DIAL_PREFIX = re.compile(r"^\+[1-9]\d{0,14}$")


class ConfigError(Exception):
    """Invalid configuration; .errors holds one sentence per problem, naming the key.

    Shown with one problem per line when there are several, so a pasted config with many
    mistakes reads as a list to work through."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        if len(self.errors) == 1:
            text = f"Invalid voice-call config: {self.errors[0]}"
        else:
            text = "Invalid voice-call config:" + "".join(f"\n- {e}" for e in self.errors)
        super().__init__(text)


def _did_you_mean(key: str, known: Mapping[str, Any]) -> str:
    """` (did you mean "provider"?)` for a near miss of a known key, else ''."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def block_at(node: Any, *keys: str) -> dict[str, Any]:
    """The dict at node[k1][k2]...; a detached {} when absent or not a dict.

    The document is checked only after legacy keys move and defaults fill in, so those
    steps must walk it without trusting its shape.
    """
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, dict) else {}


Check = Callable[[str, Any], list[str]]  # (key path, value) -> error sentences


def _pred(test: Callable[[Any], bool], tail: str) -> Check:
    return lambda path, value: [] if test(value) else [f"{path}{tail}"]


def _int(low: int, high: int | None = None) -> Check:
    if high is not None:
        tail = f" must be an integer between {low} and {high}"
    else:
        tail = f" must be an integer greater than {'or equal to 0' if low == 0 else 0}"
    return _pred(lambda v: type(v) is int and low <= v <= (high or v), tail)


def _enum(*allowed: str) -> Check:
    choices = ", ".join(f'"{a}"' for a in allowed)
    return _pred(lambda v: v in allowed, f" must be one of {choices}")


def _is_url(value: Any, *, origin: bool) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (TypeError, ValueError, AttributeError):
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    bare = parts.path in ("", "/") and not (parts.query or parts.fragment)
    return bare or not origin


def _list(item: Check) -> Check:
    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            return [f"{path} must be a list"]
        return [e for i, v in enumerate(value) for e in item(f"{path}[{i}]", v)]

    return check


def _obj(
    spec: Mapping[str, Any], extra: Check | None = None, key_check: Check | None = None
) -> Check:
    """One check for an object. Spec values are checks or nested specs; keys outside the
    spec go to `extra` (a free-form map) or are rejected (strict)."""
    checks = {k: _obj(v) if isinstance(v, dict) else v for k, v in spec.items()}

    def check(path: str, value: Any) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path} must be an object"]
        errors = []
        for key, item in value.items():
            errors += key_check(f"{path}.{key}", key) if key_check else []
            item_check = checks.get(key, extra)
            if item_check is None:
                errors.append(f"{path}.{key} is not a recognized key{_did_you_mean(key, checks)}")
            elif item is not None:  # null means "unset", as in the plugin's JSON
                errors += item_check(f"{path}.{key}", item)
        return errors

    return check


_ANY = _pred(lambda v: True, "")
_BOOL = _pred(lambda v: isinstance(v, bool), " must be a boolean")
_STR = _pred(lambda v: isinstance(v, str), " must be a string")
_STRS = _list(_STR)
_INT0, _INT1, _PORT = _int(0), _int(1), _int(1, 65535)
_FREE = _pred(lambda v: isinstance(v, dict), " must be an object")
_PATH = _pred(
    lambda v: isinstance(v, str) and v.startswith("/"), ' must be a string starting with "/"'
)
_URL = _pred(lambda v: _is_url(v, origin=False), " must be an http(s) URL")
_ORIGIN = _pred(
    lambda v: _is_url(v, origin=True),
    " must be an http(s) origin (scheme, host and optional port; no path or query)",
)
_PHONE = _pred(lambda v: isinstance(v, str) and bool(_E164.match(v)), E164_HINT)
_PREFIX = _pred(
    lambda v: isinstance(v, str) and bool(_DIAL_PREFIX.match(v)),
    ": Expected an E.164 number or +<country code> prefix, e.g. +44",
)
_API_BLOCK = _obj({"apiKey": _STR, "baseUrl": _URL}, extra=_ANY)


def _route_tts(path: str, value: Any) -> list[str]:
    # A route's tts merges over the top-level one, so it takes the same keys (_SPEC, below):
    # a key the merge would carry but nothing reads must not pass silently.
    return _obj(_SPEC["tts"])(path, value)


_ROUTE = _obj(
    {
        "inboundGreeting": _STR,
        "tts": _route_tts,
        "agentId": _STR,
        "responseModel": _STR,
        "responseSystemPrompt": _STR,
        "responseTimeoutMs": _INT1,
    }
)
_MODEL_OVERRIDES = (
    "enabled",
    "allowText",
    "allowProvider",
    "allowVoice",
    "allowModelId",
    "allowVoiceSettings",
    "allowNormalization",
    "allowSeed",
)

# The plugin's keys plus our additions, `mock` among them (docs/plugin-behaviour.md,
# "Config shape and defaults"). A dict is a strict object, anything else a check. Empty
# credential strings count as unset (env may fill them; the "Config errors" strings name
# them). Keep in step with calls/config/sections.py, which reads these keys typed.
_SPEC: dict[str, Any] = {
    "enabled": _BOOL,
    "provider": _enum("telnyx", "twilio", "plivo", "mock"),
    "telnyx": {"apiKey": _STR, "connectionId": _STR, "publicKey": _STR, "apiBaseUrl": _ORIGIN},
    "twilio": {
        "accountSid": _STR,
        "authToken": _STR,
        "region": _enum("us1", "ie1", "au1"),
        "apiBaseUrl": _ORIGIN,
    },
    "plivo": {"authId": _STR, "authToken": _STR, "apiBaseUrl": _ORIGIN},
    "fromNumber": _PHONE,
    "toNumber": _PHONE,
    "inboundPolicy": _enum("disabled", "allowlist", "pairing", "open"),
    "allowFrom": _list(_PHONE),
    "inboundGreeting": _STR,
    "numbers": _obj({}, extra=_ROUTE, key_check=_PHONE),
    "outbound": {
        "defaultMode": _enum("notify", "conversation"),
        "notifyHangupDelaySec": _INT0,
        "allowTo": _list(_PREFIX),
        "machineDetection": _enum("off", "detect", "hangup", "leaveMessage"),
    },
    "maxDurationSeconds": _INT1,
    "staleCallReaperSeconds": _INT0,
    "silenceTimeoutMs": _INT1,  # unused, as in the plugin: only 800 loads (unsupported.py)
    "transcriptTimeoutMs": _INT1,
    "ringTimeoutMs": _INT1,
    "maxConcurrentCalls": _INT1,
    "serve": {"port": _PORT, "bind": _STR, "path": _PATH, "drainSeconds": _INT0},
    "tailscale": {"mode": _enum("off", "serve", "funnel"), "path": _PATH, "port": _PORT},
    "tunnel": {
        "provider": _enum("none", "ngrok", "tailscale-serve", "tailscale-funnel"),
        "ngrokAuthToken": _STR,
        "ngrokDomain": _STR,
        "allowNgrokFreeTierLoopbackBypass": _BOOL,
    },
    "webhookSecurity": {
        "allowedHosts": _STRS,
        "trustForwardingHeaders": _BOOL,
        "trustedProxyIPs": _STRS,
    },
    "streaming": {
        "enabled": _BOOL,
        "provider": _STR,
        "streamPath": _PATH,
        "providers": _obj({"openai": _API_BLOCK}, extra=_FREE),
        "preStartTimeoutMs": _INT1,
        "maxPendingConnections": _INT1,
        "maxPendingConnectionsPerIp": _INT1,
        "maxConnections": _INT1,
    },
    "realtime": {
        "enabled": _BOOL,
        "provider": _STR,
        "streamPath": _PATH,
        "instructions": _STR,
        "tools": _list(_FREE),
        "providers": _obj({}, extra=_FREE),
        "toolPolicy": _enum("safe-read-only", "owner", "none"),
        "consultPolicy": _enum("auto", "substantive", "always"),
        "consultThinkingLevel": _STR,
        "consultFastMode": _BOOL,
        "idleHangupMs": _INT1,
        "fastContext": {
            "enabled": _BOOL,
            "timeoutMs": _INT1,
            "maxResults": _INT1,
            "sources": _STRS,
            "fallbackToConsult": _BOOL,
        },
        "agentContext": {
            "enabled": _BOOL,
            "maxChars": _INT1,
            "includeIdentity": _BOOL,
            "includeWorkspaceFiles": _BOOL,
            "files": _STRS,
        },
    },
    "sessionScope": _enum("per-phone", "per-call", "main"),
    "publicUrl": _URL,
    "skipSignatureVerification": _BOOL,
    "tts": {
        "auto": _enum("off", "always", "inbound", "tagged"),
        "enabled": _BOOL,
        "mode": _enum("final", "all"),
        "provider": _STR,
        # Our addition: provider ids tried in order after tts.provider fails
        # (docs/plugin-behaviour.md, "TTS failover").
        "fallbacks": _STRS,
        "summaryModel": _STR,
        "modelOverrides": {key: _BOOL for key in _MODEL_OVERRIDES},
        "providers": _obj({"openai": _API_BLOCK, "elevenlabs": _API_BLOCK}, extra=_FREE),
        "prefsPath": _STR,
        "maxTextLength": _INT1,
        "timeoutMs": _int(1000, 120000),
    },
    "store": _STR,
    "agentId": _STR,
    # Ours: the gateway's own agent answers instead of responseModel
    # (docs/plugin-behaviour.md, "The gateway's agent as responder").
    "responder": {"url": _URL, "secret": _STR, "timeoutMs": _int(100, 60000)},
    "responseModel": _STR,
    "responseSystemPrompt": _STR,
    "responseTimeoutMs": _INT1,
    "responseBaseUrl": _URL,
    # Our addition: how long history is kept and what a stored transcript line hides
    # (docs/architecture.md, "Retention and redaction").
    "retention": {
        "transcriptDays": _INT0,
        "callDays": _INT0,
        "redact": _list(_enum("phone", "email", "card")),
    },
    "mock": {
        "simulate": _BOOL,
        "answerDelayMs": _INT0,
        "ringDelayMs": _INT0,
        "replyDelayMs": _INT0,
        "callerReplies": _STRS,
        "callerHangupAfterReplies": _INT0,
        "callerIdleHangupMs": _INT0,
        "machineDetectionDelayMs": _INT0,
    },
}
_SCHEMA = _obj(_SPEC)


def spec_has(*keys: str) -> bool:
    """Whether the key path is in the table (a test keeps the typed sections in step)."""
    node: Any = _SPEC
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@dataclass(frozen=True, slots=True)
class CarrierKeys:
    """What one carrier's block must hold before the carrier can be used.

    Each carrier states its own needs here, so the checks and the environment fill below
    carry no carrier names (docs/plugin-behaviour.md, "Config errors").
    """

    # (key in the carrier's block, environment variable that fills it when unset)
    credentials: tuple[tuple[str, str], ...]
    # Named in the fromNumber error and filled into fromNumber when set (Twilio only).
    from_number_env: str | None = None
    # Keys only signature verification needs: optional with skipSignatureVerification.
    signature_keys: tuple[str, ...] = ()


CARRIER_KEYS: dict[str, CarrierKeys] = {
    "twilio": CarrierKeys(
        credentials=(("accountSid", "TWILIO_ACCOUNT_SID"), ("authToken", "TWILIO_AUTH_TOKEN")),
        from_number_env="TWILIO_FROM_NUMBER",
    ),
    "telnyx": CarrierKeys(
        credentials=(
            ("apiKey", "TELNYX_API_KEY"),
            ("connectionId", "TELNYX_CONNECTION_ID"),
            ("publicKey", "TELNYX_PUBLIC_KEY"),
        ),
        signature_keys=("publicKey",),
    ),
    "plivo": CarrierKeys(
        credentials=(("authId", "PLIVO_AUTH_ID"), ("authToken", "PLIVO_AUTH_TOKEN"))
    ),
}

STREAMING_CARRIERS = ("twilio", "telnyx", "plivo")


def validate(data: dict[str, Any]) -> list[str]:
    """Every problem of a migrated, default-filled plugin object, one sentence each."""
    errors = _SCHEMA(PLUGIN_PATH, data) + _funnel_errors(data) + _responder_errors(data)
    if data.get("enabled") is True:
        errors += _provider_errors(data)
    return errors


def _provider_errors(data: dict[str, Any]) -> list[str]:
    """The plugin's validateProviderConfig; runs only when the plugin is enabled.

    docs/plugin-behaviour.md, "Config errors".
    """
    p, provider = PLUGIN_PATH, str(data.get("provider") or "")
    errors = [] if provider else [f"{p}.provider is required"]
    carrier = CARRIER_KEYS.get(provider)
    if carrier is None:
        return errors + _mode_errors(data, provider)
    if data.get("fromNumber") in (None, ""):
        env = carrier.from_number_env
        errors.append(f"{p}.fromNumber is required" + (f" (or set {env} env)" if env else ""))
    unsigned = data.get("skipSignatureVerification") is True
    for key, var in carrier.credentials:
        if unsigned and key in carrier.signature_keys:
            continue
        if isinstance(data[provider], dict) and data[provider].get(key) in (None, ""):
            errors.append(f"{p}.{provider}.{key} is required (or set {var} env)")
    return errors + _mode_errors(data, provider)


def _mode_errors(data: dict[str, Any], provider: str) -> list[str]:
    p, errors = PLUGIN_PATH, []
    streaming = block_at(data, "streaming").get("enabled") is True
    if block_at(data, "realtime").get("enabled") is True:
        if data.get("inboundPolicy") == "disabled":
            errors.append(f'{p}.inboundPolicy must not be "disabled" when realtime.enabled is true')
        if streaming:
            errors.append(f"{p}.realtime.enabled and {p}.streaming.enabled cannot both be true")
        if provider not in ("twilio", "telnyx", "mock"):
            errors.append(
                f'{p}.provider must be "twilio", "telnyx", or "mock" when realtime.enabled is true'
            )
    # The plugin streams on Twilio only; here every real carrier streams
    # (docs/plugin-behaviour.md, "Streaming and realtime settings").
    if streaming and provider not in STREAMING_CARRIERS:
        errors.append(
            f'{p}.provider must be "twilio", "telnyx" or "plivo" when streaming.enabled is true'
        )
    return errors


def _responder_errors(data: dict[str, Any]) -> list[str]:
    # An unsigned request would let anyone who can reach the gateway speak to callers.
    responder = block_at(data, "responder")
    if responder.get("url") and responder.get("secret") in (None, ""):
        return [f"{PLUGIN_PATH}.responder.secret is required when responder.url is set"]
    return []


def _funnel_errors(data: dict[str, Any]) -> list[str]:
    tailscale = block_at(data, "tailscale")
    funnel = tailscale.get("mode") == "funnel" or (
        block_at(data, "tunnel").get("provider") == "tailscale-funnel"
    )
    if funnel and tailscale.get("port") not in (443, 8443, 10000):
        return [
            f"{PLUGIN_PATH}.tailscale.port: Tailscale Funnel HTTPS port "
            "must be one of 443, 8443, 10000"
        ]
    return []
