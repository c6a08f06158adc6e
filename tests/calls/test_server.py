"""Server preflight: skipSignatureVerification only on loopback without exposure.

docs/security.md, "Webhooks", step 9.
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.config import ConfigError
from calls.serving.startup import preflight


def test_skip_mode_is_allowed_on_loopback_without_exposure(configure: Any) -> None:
    configure({"skipSignatureVerification": True})
    preflight("127.0.0.1")


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ({"skipSignatureVerification": True}, "0.0.0.0"),
        (
            {"skipSignatureVerification": True, "publicUrl": "https://v.example.com/voice/webhook"},
            "127.0.0.1",
        ),
        ({"skipSignatureVerification": True, "tunnel": {"provider": "ngrok"}}, "127.0.0.1"),
    ],
)
def test_skip_mode_is_refused_when_exposed(configure: Any, raw: dict, host: str) -> None:
    configure(raw)
    with pytest.raises(SystemExit, match="only allowed when serving on loopback"):
        preflight(host)


def test_a_bad_config_stops_the_server(monkeypatch: pytest.MonkeyPatch) -> None:

    def broken() -> Any:
        raise ConfigError(["plugins.entries.voice-call.config.serve.hots is not a recognized key"])

    monkeypatch.setattr("calls.serving.startup.get_config", broken)
    with pytest.raises(ConfigError, match="serve.hots"):
        preflight("127.0.0.1")
