"""The public webhook URL at `voicecall serve`: tunnel base, publicUrl priority, the refusal."""

from __future__ import annotations

from typing import Any

import pytest

from calls import carrier as runtime
from calls.carrier import (
    call_webhook_url,
    provider_settings,
    set_public_base,
    webhook_url,
)
from calls.serving import exposure, server
from calls.serving.exposure import exposure_start, exposure_stop
from calls.serving.startup import preflight
from tests.fakes.tunnels.helpers import (
    NGROK_URL,
    FakePopen,
    FakeProcess,
    FakeRun,
    failed,
    ngrok_api,
    tunnels_body,
)

TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "t"},
}
REFUSED = (
    "[voice-call] twilio requires a publicly reachable webhook URL. Refusing to use "
    "local-only webhook http://127.0.0.1:3334/voice/webhook. Set "
    "plugins.entries.voice-call.config.publicUrl or enable tunnel/tailscale exposure."
)


@pytest.fixture(autouse=True)
def _fresh_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tunnel base and the local address are process globals: restored after each test."""
    monkeypatch.setattr(runtime, "_public_base", None)
    monkeypatch.setattr(runtime, "_local_address", None)


@pytest.fixture
def fake_ngrok(monkeypatch: pytest.MonkeyPatch) -> FakeProcess:
    process = FakeProcess()
    monkeypatch.setattr(exposure, "POPEN", FakePopen(process))
    ready = tunnels_body((NGROK_URL, "http://localhost:3334"))
    monkeypatch.setattr(exposure, "NGROK_TRANSPORT", lambda: ngrok_api(ready))
    return process


# -- webhook URL ------------------------------------------------------------------------------


def test_webhook_url_uses_the_tunnel_base_when_there_is_no_public_url(configure: Any) -> None:
    configure({"serve": {"path": "/hooks/voice"}})
    set_public_base("https://abc.ngrok.app/")
    cfg = runtime.get_config()
    assert webhook_url() == "https://abc.ngrok.app/hooks/voice"
    assert call_webhook_url("c1") == "https://abc.ngrok.app/hooks/voice?callId=c1"
    assert provider_settings(cfg)["publicUrl"] == "https://abc.ngrok.app/hooks/voice"


def test_public_url_wins_over_the_tunnel(configure: Any) -> None:
    configure({"publicUrl": "https://voice.example.com/voice/webhook"})
    set_public_base("https://abc.ngrok.app")
    assert webhook_url() == "https://voice.example.com/voice/webhook"


def test_clearing_the_tunnel_base_goes_back_to_the_local_url(configure: Any) -> None:
    configure({})
    set_public_base("https://abc.ngrok.app")
    set_public_base(None)
    assert webhook_url() == "http://127.0.0.1:3334/voice/webhook"


# -- start and stop at serve ------------------------------------------------------------------


def test_ngrok_tunnel_becomes_the_webhook_and_is_stopped(
    configure: Any, fake_ngrok: FakeProcess
) -> None:
    cfg = configure({"tunnel": {"provider": "ngrok", "ngrokAuthToken": "tok"}})
    tunnel = exposure_start(cfg, port=3334)
    assert webhook_url() == f"{NGROK_URL}/voice/webhook"
    assert exposure.POPEN.env["NGROK_AUTHTOKEN"] == "tok"
    exposure_stop(tunnel)
    assert fake_ngrok.terminated
    assert webhook_url() == "http://127.0.0.1:3334/voice/webhook"


def test_no_tunnel_is_started_when_public_url_is_set(
    configure: Any, fake_ngrok: FakeProcess
) -> None:
    cfg = configure(
        {"publicUrl": "https://voice.example.com/voice/webhook", "tunnel": {"provider": "ngrok"}}
    )
    assert exposure_start(cfg, port=3334) is None
    assert exposure.POPEN.calls == []


def test_legacy_tailscale_mode_publishes_tailscale_path(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FakeRun()
    monkeypatch.setattr(exposure, "RUN", run)
    cfg = configure({"tailscale": {"mode": "funnel", "path": "/pub"}})
    tunnel = exposure_start(cfg, port=3334)
    assert run.calls[1] == [
        "tailscale",
        "funnel",
        "--bg",
        "--yes",
        "--set-path",
        "/pub",
        "http://127.0.0.1:3334/voice/webhook",
    ]
    assert webhook_url() == "https://box.tail1234.ts.net/pub"
    exposure_stop(tunnel)
    assert ["tailscale", "funnel", "off", "/pub"] in run.calls


def test_tunnel_tailscale_serve_publishes_serve_path(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposure, "RUN", FakeRun())
    cfg = configure(
        {
            "tunnel": {"provider": "tailscale-serve"},
            "tailscale": {"path": "/ignored", "port": 10000},
        }
    )
    exposure_start(cfg, port=3334)
    assert webhook_url() == "https://box.tail1234.ts.net:10000/voice/webhook"


def test_a_tunnel_that_cannot_start_stops_serve_with_one_sentence(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposure, "RUN", FakeRun(funnel=failed("Funnel is not enabled.")))
    cfg = configure({"tunnel": {"provider": "tailscale-funnel"}})
    with pytest.raises(SystemExit) as caught:
        exposure_start(cfg, port=3334)
    assert str(caught.value) == (
        "Could not expose the webhook: tailscale funnel failed (Funnel is not enabled.); "
        "enable it at https://login.tailscale.com/f/funnel?node=nBoX123CNTRL"
    )
    assert runtime._public_base is None


def test_serve_stops_the_tunnel_when_the_server_ends(
    configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    configure({"tunnel": {"provider": "ngrok"}})
    stopped: list[Any] = []
    monkeypatch.setenv("VOICECALL_SWEEP", "off")
    monkeypatch.setattr(server, "exposure_start", lambda cfg, port: "the-tunnel")
    monkeypatch.setattr(server, "exposure_stop", stopped.append)
    monkeypatch.setattr(server, "startup", lambda: None)

    def crash(self: Any) -> None:
        raise RuntimeError("server died")

    monkeypatch.setattr(uvicorn.Server, "run", crash)
    with pytest.raises(RuntimeError):
        server.run(host="127.0.0.1", port=3334)
    assert stopped == ["the-tunnel"]


# -- the [latest] refusal of local-only webhooks ------------------------------------------------


def test_serve_refuses_twilio_without_a_public_url(configure: Any) -> None:
    configure(TWILIO)
    runtime.set_local_address(host="127.0.0.1", port=3334)
    with pytest.raises(SystemExit) as caught:
        preflight("127.0.0.1", serving=True)
    assert str(caught.value) == REFUSED


def test_the_refusal_names_the_provider_and_the_served_address(configure: Any) -> None:
    configure(
        {
            "provider": "telnyx",
            "fromNumber": "+15550001234",
            "telnyx": {"apiKey": "k", "connectionId": "c", "publicKey": "p"},
        }
    )
    runtime.set_local_address(host="0.0.0.0", port=8080)
    with pytest.raises(
        SystemExit,
        match=r"telnyx requires .* webhook "
        r"http://127\.0\.0\.1:8080/voice/webhook\.",
    ):
        preflight("0.0.0.0", serving=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/voice/webhook",
        "https://localhost/voice/webhook",
        "https://100.101.102.103/voice/webhook",
    ],
)
def test_serve_refuses_a_private_public_url_even_with_a_tunnel(configure: Any, url: str) -> None:
    configure({**TWILIO, "publicUrl": url, "tunnel": {"provider": "ngrok"}})
    with pytest.raises(SystemExit, match="Refusing to use local-only webhook"):
        preflight("127.0.0.1", serving=True)


@pytest.mark.parametrize(
    "raw",
    [
        {**TWILIO, "publicUrl": "https://voice.example.com/voice/webhook"},
        {**TWILIO, "tunnel": {"provider": "ngrok"}},
        {**TWILIO, "tailscale": {"mode": "funnel"}},
        {"provider": "mock"},
        {**TWILIO, "enabled": False},  # places no call: hands Twilio no URL
    ],
)
def test_serve_accepts_a_public_url_a_tunnel_or_the_mock(configure: Any, raw: dict) -> None:
    configure(raw)
    preflight("127.0.0.1", serving=True)


def test_asgi_import_preflight_does_not_refuse(configure: Any) -> None:
    configure(TWILIO)
    preflight()  # tests and other servers load the app with carriers and no public URL
