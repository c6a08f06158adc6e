"""The plugin config as typed, frozen sections: one dataclass per block, carrying its defaults.

The validated camelCase document is parsed once into these (`VoiceCallConfig`), so code
reads `cfg.streaming.max_connections` instead of `.get("maxConnections", 128)` and each
default is written here only. The defaults are the plugin's (docs/plugin-behaviour.md,
"Config shape and defaults"; docs/design.md, "4. Configuration").

A field reads the camelCase form of its name (`max_pending_connections_per_ip` reads
`maxPendingConnectionsPerIp`) unless `_key()` names another; an unset (absent or null) key
keeps the default. Lists become tuples; free-form provider blocks stay mappings of the
plugin's camelCase keys, because the adapters in providers/ own those keys.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Any, Literal, get_args, get_origin, get_type_hints

CarrierName = Literal["telnyx", "twilio", "plivo", "mock"]
InboundPolicyName = Literal["disabled", "allowlist", "pairing", "open"]
CallMode = Literal["notify", "conversation"]
TailscaleMode = Literal["off", "serve", "funnel"]
TunnelProvider = Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"]
SessionScope = Literal["per-phone", "per-call", "main"]
MachineDetectionMode = Literal["off", "detect", "hangup", "leaveMessage"]
RedactKind = Literal["phone", "email", "card"]

_KEY = "voicecall.key"  # field metadata: the camelCase key, when not the name's camelCase
_OWN = "voicecall.own"  # field metadata: VoiceCallConfig's own bookkeeping, not a config key


def _key(name: str) -> dict[str, str]:
    return {_KEY: name}


@dataclass(frozen=True, slots=True)
class TelnyxConfig:
    """`telnyx`: credentials (env may fill them) and the API origin, our addition."""

    api_key: str | None = None
    connection_id: str | None = None
    public_key: str | None = None
    api_base_url: str = "https://api.telnyx.com"


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """`twilio`: credentials (env may fill them), region, and the API origin."""

    account_sid: str | None = None
    auth_token: str | None = None
    region: Literal["us1", "ie1", "au1"] | None = None
    api_base_url: str = "https://api.twilio.com"


@dataclass(frozen=True, slots=True)
class PlivoConfig:
    """`plivo`: credentials (env may fill them) and the API origin."""

    auth_id: str | None = None
    auth_token: str | None = None
    api_base_url: str = "https://api.plivo.com"


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One `numbers.<E.164>` route: overrides for inbound calls to that number; unset keys
    fall back to the top-level ones (docs/plugin-behaviour.md, "Per-number routes")."""

    inbound_greeting: str | None = None
    tts: Mapping[str, Any] | None = None  # over `tts` for its calls (services/routes.py)
    agent_id: str | None = None
    response_model: str | None = None
    response_system_prompt: str | None = None
    response_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ResponderConfig:
    """`responder`, ours: the gateway's own agent answers callers; a set `url` wins over
    responseModel (docs/plugin-behaviour.md, "The gateway's agent as responder")."""

    url: str | None = None
    secret: str | None = None
    timeout_ms: int = 5000


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """`outbound`: the default call mode, the notify hangup delay, and allowed destinations
    (numbers or +<country code> prefixes; empty allows any)."""

    default_mode: CallMode = "notify"
    notify_hangup_delay_sec: int = 3
    allow_to: tuple[str, ...] = ()
    # Answering-machine detection on outbound calls (docs/carriers.md,
    # "Answering-machine detection").
    machine_detection: MachineDetectionMode = "off"


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """`serve`: where the webhook server listens and the webhook path; `drainSeconds`
    (ours) is how long live streams may run on after SIGTERM (docs/architecture.md,
    "Graceful drain")."""

    port: int = 3334
    bind: str = "127.0.0.1"
    path: str = "/voice/webhook"
    drain_seconds: int = 30


@dataclass(frozen=True, slots=True)
class TailscaleConfig:
    """`tailscale`: the legacy exposure, used when tunnel.provider is "none"."""

    mode: TailscaleMode = "off"
    path: str = "/voice/webhook"
    port: int = 443  # Funnel takes only 443, 8443 or 10000


@dataclass(frozen=True, slots=True)
class TunnelConfig:
    """`tunnel`: the exposure `voicecall serve` starts (ngrok or Tailscale)."""

    provider: TunnelProvider = "none"
    ngrok_auth_token: str | None = None
    ngrok_domain: str | None = None
    # docs/plugin-behaviour.md, "Public URL reconstruction".
    allow_ngrok_free_tier_loopback_bypass: bool = False


@dataclass(frozen=True, slots=True)
class WebhookSecurityConfig:
    """`webhookSecurity`: which forwarded hosts and proxies count when the public URL is
    reconstructed (docs/plugin-behaviour.md, "Public URL reconstruction")."""

    allowed_hosts: tuple[str, ...] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[str, ...] = field(default=(), metadata=_key("trustedProxyIPs"))


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    """`streaming`: carrier media streams transcribed by an STT provider, and the socket
    limits (docs/plugin-behaviour.md, "Streaming and realtime settings" and "Media streams:
    limits and close codes")."""

    enabled: bool = False
    provider: str | None = None
    stream_path: str = "/voice/stream"
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pre_start_timeout_ms: int = 5000
    max_pending_connections: int = 32
    max_pending_connections_per_ip: int = 4
    max_connections: int = 128


@dataclass(frozen=True, slots=True)
class FastContextConfig:
    """`realtime.fastContext`: loads only switched off (calls/config/unsupported.py)."""

    enabled: bool = False
    timeout_ms: int = 800
    max_results: int = 3
    sources: tuple[str, ...] = ("memory", "sessions")
    fallback_to_consult: bool = False


@dataclass(frozen=True, slots=True)
class AgentContextConfig:
    """`realtime.agentContext`: loads only switched off (calls/config/unsupported.py)."""

    enabled: bool = False
    max_chars: int = 6000
    include_identity: bool = True
    include_workspace_files: bool = True
    files: tuple[str, ...] = ("SOUL.md", "IDENTITY.md", "USER.md")


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    """`realtime`: streams talk to a speech-to-speech model instead of STT + TTS.

    stream_path is unset only before parsing: parse_config derives it from serve.path
    (`realtime_stream_path`). The consult settings and `tools` load only at values that
    ask for nothing (calls/config/unsupported.py); `idleHangupMs` hangs up a call whose
    caller said nothing that long (calls/services/idle.py).
    """

    enabled: bool = False
    provider: str | None = None
    stream_path: str | None = None
    instructions: str | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tool_policy: Literal["safe-read-only", "owner", "none"] = "safe-read-only"
    consult_policy: Literal["auto", "substantive", "always"] = "auto"
    consult_thinking_level: str | None = None
    consult_fast_mode: bool | None = None
    idle_hangup_ms: int | None = None
    fast_context: FastContextConfig = field(default_factory=FastContextConfig)
    agent_context: AgentContextConfig = field(default_factory=AgentContextConfig)


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """`tts`, merged over the document's messages.tts: the speech provider and its blocks
    (docs/plugin-behaviour.md, "TTS config and voice lookup"). provider, fallbacks,
    providers, timeoutMs and maxTextLength take effect; the chat keys load only at values
    that ask for nothing (calls/config/unsupported.py). fallbacks: provider ids tried in order
    when tts.provider fails (docs/plugin-behaviour.md, "TTS failover"). Unset keys stay out
    of the camelCase block, fallbacks too."""

    auto: Literal["off", "always", "inbound", "tagged"] | None = None
    enabled: bool | None = None
    mode: Literal["final", "all"] | None = None
    provider: str | None = None
    fallbacks: tuple[str, ...] | None = None
    summary_model: str | None = None
    model_overrides: Mapping[str, bool] | None = None
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prefs_path: str | None = None
    max_text_length: int | None = None
    timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """`retention`, our addition: days an ended call's transcript lines and the call itself
    are kept (unset = for ever, 0 = purge at the next run) and what a stored line hides
    (docs/architecture.md, "Retention and redaction")."""

    transcript_days: int | None = None
    call_days: int | None = None
    redact: tuple[RedactKind, ...] = ()


@dataclass(frozen=True, slots=True)
class MockConfig:
    """`mock`, our addition: how the simulated remote carrier behaves."""

    simulate: bool = True
    answer_delay_ms: int = 1500
    ring_delay_ms: int = 500
    reply_delay_ms: int = 1200
    caller_replies: tuple[str, ...] = ("Yes, that works for me.", "No, thank you. Goodbye.")
    caller_hangup_after_replies: int = 0
    caller_idle_hangup_ms: int = 10000
    # The simulated answering-machine verdict, this long after the answer.
    machine_detection_delay_ms: int = 800


def realtime_stream_path(serve_path: str) -> str:
    """realtime.streamPath's default: a trailing /webhook becomes /stream/realtime, else
    append.

    docs/plugin-behaviour.md, "Streaming and realtime settings".
    """
    path = serve_path.rstrip("/")
    if not path:
        return "/voice/stream/realtime"
    if path.endswith("/webhook"):
        return path.removesuffix("/webhook") + "/stream/realtime"
    return path + "/stream/realtime"


@dataclass(frozen=True)
class VoiceCallConfig:
    """The whole plugin config: the validated camelCase document and its typed reading.

    `data` stays the source the typed fields are parsed from (once, at construction), and
    what `section()` copies blocks out of for providers/, whose adapters take camelCase
    blocks and must not import calls/. Top-level keys are fields here; blocks are
    sections. `tts` and `mock` are the camelCase blocks handed to the adapters, so their
    typed sections are `tts_config` and `mock_config`.
    """

    data: dict[str, Any] = field(metadata={_OWN: True})
    warnings: tuple[str, ...] = field(default=(), metadata={_OWN: True})
    source: str | None = field(default=None, metadata={_OWN: True})

    # Same order as the key table (calls/config/schema.py), so filled defaults follow it.
    # A missing `enabled` means enabled: the plugin-entry quirk.
    enabled: bool = field(init=False, default=True)
    # parse_config makes it "mock" when enabled; a disabled config leaves it unset.
    provider: CarrierName | None = field(init=False, default=None)
    telnyx: TelnyxConfig = field(init=False, default_factory=TelnyxConfig)
    twilio: TwilioConfig = field(init=False, default_factory=TwilioConfig)
    plivo: PlivoConfig = field(init=False, default_factory=PlivoConfig)
    from_number: str | None = field(init=False, default=None)
    to_number: str | None = field(init=False, default=None)
    inbound_policy: InboundPolicyName = field(init=False, default="disabled")
    allow_from: tuple[str, ...] = field(init=False, default=())
    inbound_greeting: str | None = field(init=False, default=None)
    numbers: Mapping[str, RouteConfig] = field(init=False, default_factory=dict)
    outbound: OutboundConfig = field(init=False, default_factory=OutboundConfig)
    max_duration_seconds: int = field(init=False, default=300)
    stale_call_reaper_seconds: int = field(init=False, default=120)  # 0 disables the reaper
    silence_timeout_ms: int = field(init=False, default=800)  # only 800 loads: unused
    transcript_timeout_ms: int = field(init=False, default=180000)
    ring_timeout_ms: int = field(init=False, default=30000)
    max_concurrent_calls: int = field(init=False, default=1)
    serve: ServeConfig = field(init=False, default_factory=ServeConfig)
    tailscale: TailscaleConfig = field(init=False, default_factory=TailscaleConfig)
    tunnel: TunnelConfig = field(init=False, default_factory=TunnelConfig)
    webhook_security: WebhookSecurityConfig = field(
        init=False, default_factory=WebhookSecurityConfig
    )
    streaming: StreamingConfig = field(init=False, default_factory=StreamingConfig)
    realtime: RealtimeConfig = field(init=False, default_factory=RealtimeConfig)
    session_scope: SessionScope = field(init=False, default="per-phone")
    public_url: str | None = field(init=False, default=None)
    skip_signature_verification: bool = field(init=False, default=False)
    tts_config: TtsConfig = field(init=False, default_factory=TtsConfig, metadata=_key("tts"))
    store: str | None = field(init=False, default=None)  # refused when set: history is in the DB
    agent_id: str | None = field(init=False, default=None)
    responder: ResponderConfig = field(init=False, default_factory=ResponderConfig)
    response_model: str | None = field(init=False, default=None)
    response_system_prompt: str | None = field(init=False, default=None)
    response_timeout_ms: int = field(init=False, default=30000)
    response_base_url: str | None = field(init=False, default=None)
    retention: RetentionConfig = field(init=False, default_factory=RetentionConfig)
    mock_config: MockConfig = field(init=False, default_factory=MockConfig, metadata=_key("mock"))

    def __post_init__(self) -> None:
        for name, value in read_block(type(self), self.data).items():
            object.__setattr__(self, name, value)

    # Shorthands older than the sections, kept because callers and tests read them.
    @property
    def serve_port(self) -> int:
        return self.serve.port

    @property
    def serve_bind(self) -> str:
        return self.serve.bind

    @property
    def serve_path(self) -> str:
        return self.serve.path

    @property
    def streaming_enabled(self) -> bool:
        return self.streaming.enabled

    @property
    def stream_path(self) -> str:
        return self.streaming.stream_path

    @property
    def default_mode(self) -> CallMode:
        return self.outbound.default_mode

    @property
    def notify_hangup_delay_sec(self) -> int:
        return self.outbound.notify_hangup_delay_sec

    @property
    def allow_to(self) -> tuple[str, ...]:
        return self.outbound.allow_to

    @property
    def tts(self) -> dict[str, Any]:
        """The merged camelCase tts block the speech adapters take (a copy)."""
        return self.section("tts")

    @property
    def mock(self) -> dict[str, Any]:
        """The camelCase mock block the mock adapter takes (a copy)."""
        return self.section("mock")

    def section(self, name: str) -> dict[str, Any]:
        """A deep copy of one camelCase block ({} when absent), for providers/ adapters.

        A copy, so the adapters can't change the cached config.
        """
        value = self.data.get(name)
        return copy.deepcopy(value) if isinstance(value, dict) else {}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _config_fields(cls: type) -> list[Field[Any]]:
    return [f for f in fields(cls) if not f.metadata.get(_OWN)]


def key_of(item: Field[Any]) -> str:
    """The camelCase config key a field reads."""
    return str(item.metadata.get(_KEY) or _camel(item.name))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def read_block(cls: type, block: object) -> dict[str, Any]:
    """{field name: typed value} for the keys of `block` that are set; the rest keep the
    dataclass defaults. Trusts the schema check: values have the right JSON types."""
    source = block if isinstance(block, Mapping) else {}
    hints = _hints(cls)
    values = {}
    for item in _config_fields(cls):
        raw = source.get(key_of(item))
        if raw is not None:  # null means "unset", as in the plugin's JSON
            values[item.name] = _typed(hints[item.name], raw)
    return values


def build[T](cls: type[T], block: object) -> T:
    """A section dataclass from its camelCase block."""
    return cls(**read_block(cls, block))


def _typed(hint: Any, raw: Any) -> Any:
    if isinstance(hint, type) and is_dataclass(hint):
        return build(hint, raw)
    origin = get_origin(hint)
    if origin is UnionType:  # `tuple[...] | None`: a set list still becomes a tuple
        arms = [arm for arm in get_args(hint) if arm is not type(None)]
        if len(arms) == 1 and get_origin(arms[0]) is tuple:
            origin = tuple
    if origin is tuple:
        return tuple(copy.deepcopy(item) for item in raw)
    if origin is Mapping:
        item_hint = get_args(hint)[1]
        if isinstance(item_hint, type) and is_dataclass(item_hint):
            # A null route still names its number: it matches, with no overrides.
            return {key: build(item_hint, value) for key, value in raw.items()}
        # A null provider block is unset; a set one is copied whole, nulls and all.
        return {key: copy.deepcopy(value) for key, value in raw.items() if value is not None}
    return copy.deepcopy(raw)  # scalars, and free-form blocks detached from `data`


def document_defaults(cls: type = VoiceCallConfig) -> dict[str, Any]:
    """The defaults as a camelCase document, to fill `data` with (parse_config).

    Unset-by-default keys are left out, and so are blocks without any default.
    """
    found: dict[str, Any] = {}
    for item in _config_fields(cls):
        if item.default is not MISSING:
            value: Any = item.default
        elif item.default_factory is not MISSING:
            value = item.default_factory()
        else:
            continue
        if is_dataclass(value):
            value = document_defaults(type(value))
            if not value:
                continue
        elif value is None:
            continue
        found[key_of(item)] = _plain(value)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value
