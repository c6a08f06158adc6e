"""`manage.py voicecall expose` with a fake tailscale: JSON output, defaults, exit codes."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from calls.serving import exposure
from tests.fakes.tunnels.helpers import FUNNEL_NOT_ENABLED, FakeRun, failed

LOCAL = "http://127.0.0.1:3334/voice/webhook"
ORIGIN = "https://box.tail1234.ts.net"


@pytest.fixture
def tailscale(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tailscale(**answers) installs a fake `tailscale` binary and returns it."""

    def install(**answers: Any) -> FakeRun:
        run = FakeRun(**answers)
        monkeypatch.setattr(exposure, "RUN", run)
        return run

    return install


def expose(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("voicecall", "expose", *args, stdout=out)
    return json.loads(out.getvalue())


def expose_fails(*args: str) -> tuple[str, dict[str, Any]]:
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("voicecall", "expose", *args, stdout=out)
    return str(caught.value), json.loads(out.getvalue())


def test_default_is_funnel_on_the_configured_paths(tailscale: Any) -> None:
    run = tailscale()
    assert expose() == {
        "ok": True,
        "mode": "funnel",
        "path": "/voice/webhook",
        "localUrl": LOCAL,
        "publicUrl": f"{ORIGIN}/voice/webhook",
    }
    assert run.calls[1] == [
        "tailscale",
        "funnel",
        "--bg",
        "--yes",
        "--set-path",
        "/voice/webhook",
        LOCAL,
    ]
    assert run.calls[2][-2] == "/voice/hold-music"  # Twilio's relative waitUrl


def test_flags_override_the_config(tailscale: Any) -> None:
    run = tailscale()
    out = expose(
        "--mode", "serve", "--path", "/pub", "--port", "4000", "--serve-path", "/hooks/voice"
    )
    assert run.calls[1] == [
        "tailscale",
        "serve",
        "--bg",
        "--yes",
        "--set-path",
        "/pub",
        "http://127.0.0.1:4000/hooks/voice",
    ]
    assert out["publicUrl"] == f"{ORIGIN}/pub"
    assert out["localUrl"] == "http://127.0.0.1:4000/hooks/voice"


def test_defaults_come_from_serve_and_tailscale_config(tailscale: Any, configure: Any) -> None:
    configure(
        {
            "serve": {"port": 4100, "path": "/in"},
            "tailscale": {"path": "/public", "port": 8443},
            "streaming": {"enabled": True, "streamPath": "/media"},
            "provider": "twilio",
            "fromNumber": "+15550001234",
            "twilio": {"accountSid": "AC1", "authToken": "t"},
        }
    )
    run = tailscale()
    out = expose("--mode", "serve")
    assert run.calls[1] == [
        "tailscale",
        "serve",
        "--bg",
        "--yes",
        "--https",
        "8443",
        "--set-path",
        "/public",
        "http://127.0.0.1:4100/in",
    ]
    assert [call[-2] for call in run.calls[2:]] == ["/voice/hold-music", "/media"]
    assert out["publicUrl"] == f"{ORIGIN}:8443/public"


def test_an_unknown_mode_is_funnel(tailscale: Any) -> None:
    tailscale()
    assert expose("--mode", "public")["mode"] == "funnel"


def test_failure_prints_the_hint_and_exits_non_zero(tailscale: Any) -> None:
    tailscale(funnel=failed(FUNNEL_NOT_ENABLED))
    message, out = expose_fails()
    assert out["ok"] is False and out["publicUrl"] is None
    assert out["hint"]["enableUrl"] == "https://login.tailscale.com/f/funnel?node=nFromOutput1"
    assert message == "voicecall expose --mode funnel failed (see hint above)."


def test_off_clears_serve_and_funnel(tailscale: Any) -> None:
    run = tailscale()
    assert expose("--mode", "off") == {"ok": True, "mode": "off", "path": "/voice/webhook"}
    assert run.calls[:2] == [
        ["tailscale", "serve", "off", "/voice/webhook"],
        ["tailscale", "funnel", "off", "/voice/webhook"],
    ]


def test_off_without_tailscale_exits_non_zero(tailscale: Any) -> None:
    tailscale(off=FileNotFoundError("tailscale"))
    _, out = expose_fails("--mode", "off")
    assert out == {
        "ok": False,
        "mode": "off",
        "path": "/voice/webhook",
        "hint": {"note": "tailscale not found"},
    }
