"""The voice-call plugin config: load, validate, and read it typed.

docs/design.md, "4. Configuration"; docs/plugin-behaviour.md, "Configuration".

- schema.py: the key table, validation and its exact error strings, each carrier's keys.
- legacy.py: older keys moved to their current place, with a warning each.
- loading.py: files (JSON/JSON5), whole OpenClaw documents, tts merge, env secrets,
  defaults, and the process-wide instance (get_config).
- sections.py: the typed, frozen sections with their defaults, and VoiceCallConfig.
"""

from __future__ import annotations

from calls.config.loading import (
    deep_merge,
    get_config,
    load_config,
    mask_secret,
    parse_config,
    reset_config,
    set_config,
)
from calls.config.schema import (
    CARRIER_KEYS,
    E164_HINT,
    PLUGIN_PATH,
    SKIP_SIGNATURE_WARNING,
    STREAMING_CARRIERS,
    CarrierKeys,
    ConfigError,
)
from calls.config.sections import (
    AgentContextConfig,
    FastContextConfig,
    MockConfig,
    OutboundConfig,
    PlivoConfig,
    RealtimeConfig,
    ResponderConfig,
    RouteConfig,
    ServeConfig,
    StreamingConfig,
    TailscaleConfig,
    TelnyxConfig,
    TtsConfig,
    TunnelConfig,
    TwilioConfig,
    VoiceCallConfig,
    WebhookSecurityConfig,
    realtime_stream_path,
)

__all__ = [
    "CARRIER_KEYS",
    "E164_HINT",
    "PLUGIN_PATH",
    "SKIP_SIGNATURE_WARNING",
    "STREAMING_CARRIERS",
    "AgentContextConfig",
    "CarrierKeys",
    "ConfigError",
    "FastContextConfig",
    "MockConfig",
    "OutboundConfig",
    "PlivoConfig",
    "RealtimeConfig",
    "ResponderConfig",
    "RouteConfig",
    "ServeConfig",
    "StreamingConfig",
    "TailscaleConfig",
    "TelnyxConfig",
    "TtsConfig",
    "TunnelConfig",
    "TwilioConfig",
    "VoiceCallConfig",
    "WebhookSecurityConfig",
    "deep_merge",
    "get_config",
    "load_config",
    "mask_secret",
    "parse_config",
    "realtime_stream_path",
    "reset_config",
    "set_config",
]
