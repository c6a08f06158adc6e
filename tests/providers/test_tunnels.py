"""providers.tunnels with fake binaries: ngrok argv/env/URL discovery, tailscale command lines."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest

from providers.tunnels import (
    NgrokTunnel,
    TailscaleExposure,
    TunnelError,
    expose,
    is_ngrok_free_tier,
    unexpose,
)
from tests.fakes.tunnels.helpers import (
    FUNNEL_NOT_ENABLED,
    NGROK_URL,
    NODE_ID,
    FakePopen,
    FakeProcess,
    FakeRun,
    Ticker,
    failed,
    ngrok_api,
    ok,
    tunnels_body,
)

LOCAL = "http://127.0.0.1:3334/voice/webhook"
ORIGIN = "https://box.tail1234.ts.net"


def ngrok(
    popen: FakePopen,
    *bodies: dict | int,
    ticker: Ticker | None = None,
    seen: list[str] | None = None,
    **options: object,
) -> NgrokTunnel:
    ticker = ticker or Ticker()
    return NgrokTunnel(
        3334,
        popen=popen,
        transport=ngrok_api(*bodies, seen=seen),
        clock=ticker.clock,
        sleep=ticker.sleep,
        **options,
    )


READY = tunnels_body((NGROK_URL, "http://localhost:3334"))


# -- ngrok: command line and environment -------------------------------------------------------


def test_ngrok_argv_without_a_domain() -> None:
    popen = FakePopen()
    ngrok(popen, READY).start()
    assert popen.argv == ["ngrok", "http", "3334", "--log", "stdout", "--log-format", "json"]


def test_ngrok_passes_the_configured_domain() -> None:
    # Plugin issue #11555: a paid domain that never reaches the agent means a drifting URL.
    popen = FakePopen()
    url = ngrok(
        popen,
        tunnels_body(("https://voice.ngrok.app", "http://localhost:3334")),
        domain="voice.ngrok.app",
    ).start()
    assert popen.argv == [
        "ngrok",
        "http",
        "3334",
        "--domain",
        "voice.ngrok.app",
        "--log",
        "stdout",
        "--log-format",
        "json",
    ]
    assert url == "https://voice.ngrok.app"


def test_ngrok_domain_given_as_a_url_is_reduced_to_its_host() -> None:
    popen = FakePopen()
    ngrok(
        popen,
        tunnels_body(("https://voice.ngrok.app", "localhost:3334")),
        domain="https://voice.ngrok.app/",
    ).start()
    assert popen.argv[3:5] == ["--domain", "voice.ngrok.app"]


def test_ngrok_authtoken_goes_to_the_child_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    popen = FakePopen()
    ngrok(popen, READY, authtoken="paid-token-123", env={"PATH": "/usr/bin"}).start()
    assert popen.env == {"PATH": "/usr/bin", "NGROK_AUTHTOKEN": "paid-token-123"}
    assert "NGROK_AUTHTOKEN" not in os.environ
    assert not any("paid-token-123" in arg for arg in popen.argv)


def test_ngrok_without_a_token_leaves_the_env_alone() -> None:
    popen = FakePopen()
    ngrok(popen, READY, env={"PATH": "/usr/bin"}).start()
    assert popen.env == {"PATH": "/usr/bin"}


def test_ngrok_child_output_is_piped_and_stdin_closed() -> None:
    popen = FakePopen()
    ngrok(popen, READY).start()
    kwargs = popen.calls[0][1]
    assert kwargs["stdout"] is subprocess.PIPE and kwargs["stderr"] is subprocess.STDOUT
    assert kwargs["stdin"] is subprocess.DEVNULL


# -- ngrok: URL discovery -------------------------------------------------------------------


def test_ngrok_polls_the_agent_api_until_our_tunnel_is_up() -> None:
    seen: list[str] = []
    ticker = Ticker()
    other = ("https://other.ngrok-free.app", "http://localhost:8080")
    url = ngrok(
        FakePopen(),
        502,
        tunnels_body(),
        tunnels_body(other),
        tunnels_body(
            other,
            ("http://ab12cd34.ngrok-free.app", "http://localhost:3334"),
            (NGROK_URL, "http://localhost:3334"),
        ),
        ticker=ticker,
        seen=seen,
    ).start()
    assert url == NGROK_URL  # https preferred, and never another agent's tunnel
    assert seen == ["http://127.0.0.1:4040/api/tunnels"] * 4
    assert ticker.sleeps == 3


def test_ngrok_times_out_and_stops_the_child() -> None:
    process = FakeProcess()
    with pytest.raises(
        TunnelError,
        match=r"did not report a public URL within 2 s "
        r"\(agent API http://127.0.0.1:4040/api/tunnels\)",
    ):
        ngrok(FakePopen(process), tunnels_body(), timeout=2.0).start()
    assert process.terminated


def test_ngrok_exit_reports_the_agent_error() -> None:
    process = FakeProcess(
        [
            {"lvl": "info", "msg": "open config file", "path": "/root/.config/ngrok/ngrok.yml"},
            {
                "lvl": "crit",
                "msg": "command failed",
                "err": "authentication failed: The authtoken you specified is invalid",
            },
        ],
        exit_code=1,
    )
    with pytest.raises(
        TunnelError,
        match="exited before the tunnel was up: authentication "
        "failed: The authtoken you specified is invalid",
    ):
        ngrok(FakePopen(process), 502).start()


def test_ngrok_exit_without_a_log_reports_the_exit_code() -> None:
    with pytest.raises(TunnelError, match="exit code 1"):
        ngrok(FakePopen(FakeProcess(exit_code=1)), 502).start()


def test_ngrok_uses_the_web_address_it_logs() -> None:
    # 4040 already taken by another agent: ngrok moves its API and says where.
    process = FakeProcess(
        [{"lvl": "info", "msg": "starting web service", "obj": "web", "addr": "127.0.0.1:4041"}]
    )
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.port == 4041:
            return httpx.Response(200, json=READY)
        return httpx.Response(200, json=tunnels_body())  # the other agent's: not ours

    tunnel = NgrokTunnel(
        3334,
        popen=FakePopen(process),
        transport=httpx.MockTransport(handle),
        clock=Ticker().clock,
        sleep=lambda _: tunnel._log.join(1.0),
    )
    assert tunnel.start() == NGROK_URL
    assert seen[-1] == "http://127.0.0.1:4041/api/tunnels"


def test_ngrok_refuses_a_url_other_than_the_configured_domain() -> None:
    process = FakeProcess()
    with pytest.raises(TunnelError, match="instead of the configured domain voice.ngrok.app"):
        ngrok(FakePopen(process), READY, domain="voice.ngrok.app").start()
    assert process.terminated


def test_ngrok_missing_binary_is_one_sentence() -> None:
    with pytest.raises(TunnelError, match="ngrok could not be started"):
        ngrok(FakePopen(error=FileNotFoundError("ngrok")), READY).start()


def test_ngrok_stop_terminates_once() -> None:
    process = FakeProcess()
    tunnel = ngrok(FakePopen(process), READY)
    tunnel.start()
    tunnel.stop()
    tunnel.stop()
    assert process.terminated and process.returncode == -15


# -- ngrok free tier -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "free"),
    [
        ("https://ab12.ngrok-free.app", True),
        ("https://ab12.ngrok-free.dev/voice/webhook", True),  # plugin issue #19487
        ("https://ab12.ngrok.io", True),  # legacy free names
        ("AB12.NGROK-FREE.APP", True),
        ("https://ab12.ngrok-free.app.:443", True),
        ("https://voice.ngrok.app", False),  # paid plans
        ("https://voice.ngrok.dev", False),
        ("https://voice.example.com", False),
        ("https://ngrok-free.app.evil.com", False),  # plugin PR #109784: not substrings
        ("https://evil.com/x.ngrok-free.app", False),
        ("https://evilngrok-free.app", False),
        ("https://ngrok-free.app", False),  # the apex is not a tunnel
        ("https://x.ngrok-free.app@evil.com", False),
        ("", False),
    ],
)
def test_free_tier_is_decided_by_hostname(url: str, free: bool) -> None:
    assert is_ngrok_free_tier(url) is free


# -- tailscale: expose ----------------------------------------------------------------------


def test_serve_with_a_non_default_https_port() -> None:
    run = FakeRun()
    result = expose(
        "serve",
        path="/voice/webhook",
        port=3334,
        serve_path="/voice/webhook",
        https_port=8443,
        run=run,
    )
    assert run.calls == [
        ["tailscale", "status", "--json"],
        [
            "tailscale",
            "serve",
            "--bg",
            "--yes",
            "--https",
            "8443",
            "--set-path",
            "/voice/webhook",
            LOCAL,
        ],
    ]
    assert result == {
        "ok": True,
        "mode": "serve",
        "path": "/voice/webhook",
        "localUrl": LOCAL,
        "publicUrl": f"{ORIGIN}:8443/voice/webhook",
    }


def test_funnel_on_443_has_no_https_flag_and_no_port_in_the_url() -> None:
    run = FakeRun()
    result = expose("funnel", path="/hook", port=4000, serve_path="/voice/webhook", run=run)
    assert run.calls[1] == [
        "tailscale",
        "funnel",
        "--bg",
        "--yes",
        "--set-path",
        "/hook",
        "http://127.0.0.1:4000/voice/webhook",
    ]
    assert result["publicUrl"] == f"{ORIGIN}/hook"
    assert result["localUrl"] == "http://127.0.0.1:4000/voice/webhook"


@pytest.mark.parametrize("mode", ["bogus", None, "FUNNEL", ""])
def test_an_unknown_mode_means_funnel(mode: str | None) -> None:
    run = FakeRun()
    assert expose(mode, path="/p", port=1, serve_path="/p", run=run)["mode"] == "funnel"
    assert run.calls[1][1] == "funnel"


def test_extra_paths_are_mounted_as_they_are() -> None:
    run = FakeRun()
    expose(
        "funnel",
        path="/voice/webhook",
        port=3334,
        serve_path="/voice/webhook",
        extra_paths=["/voice/hold-music", "/voice/stream"],
        run=run,
    )
    assert [call[-2:] for call in run.calls[1:]] == [
        ["/voice/webhook", LOCAL],
        ["/voice/hold-music", "http://127.0.0.1:3334/voice/hold-music"],
        ["/voice/stream", "http://127.0.0.1:3334/voice/stream"],
    ]


def test_funnel_failure_hint_carries_tailscales_enable_url() -> None:
    run = FakeRun(funnel=failed(FUNNEL_NOT_ENABLED))
    result = expose(
        "funnel", path="/voice/webhook", port=3334, serve_path="/voice/webhook", run=run
    )
    assert result["ok"] is False and result["publicUrl"] is None
    assert result["hint"]["enableUrl"] == "https://login.tailscale.com/f/funnel?node=nFromOutput1"
    assert "tailscale funnel failed" in result["hint"]["note"]


def test_failure_hint_builds_the_enable_url_from_the_node_id() -> None:
    run = FakeRun(serve=failed("serve config denied"))
    result = expose("serve", path="/voice/webhook", port=3334, serve_path="/voice/webhook", run=run)
    assert result["hint"]["enableUrl"] == f"https://login.tailscale.com/f/serve?node={NODE_ID}"
    assert "serve config denied" in result["hint"]["note"]


def test_a_hanging_tailscale_is_a_failure_with_its_enable_url() -> None:
    # Without Funnel enabled, `tailscale funnel --bg` prints the link and waits forever.
    hang = subprocess.TimeoutExpired(["tailscale"], 20, output=FUNNEL_NOT_ENABLED.encode())
    result = expose("funnel", path="/p", port=1, serve_path="/p", run=FakeRun(funnel=hang))
    assert result["ok"] is False
    assert result["hint"]["enableUrl"].endswith("node=nFromOutput1")
    assert "(Funnel is not enabled on your tailnet. timed out after 20 s)" in result["hint"]["note"]


def test_a_failed_route_rolls_back_the_ones_mounted() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(argv)
        if argv[1] == "status":
            return FakeRun()(argv, **kwargs)
        return failed("boom") if argv[-2] == "/voice/stream" else ok()

    result = expose(
        "funnel",
        path="/voice/webhook",
        port=3334,
        serve_path="/voice/webhook",
        extra_paths=["/voice/stream"],
        run=run,
    )
    assert result["ok"] is False
    assert calls[-1] == ["tailscale", "funnel", "off", "/voice/webhook"]


def test_funnel_refuses_a_port_it_cannot_use() -> None:
    run = FakeRun()
    result = expose("funnel", path="/p", port=1, serve_path="/p", https_port=8080, run=run)
    assert result["ok"] is False
    assert result["hint"] == {"note": "Tailscale Funnel HTTPS port must be one of 443, 8443, 10000"}
    assert run.calls == []


def test_tailscale_not_running_is_a_hint() -> None:
    run = FakeRun(
        status=failed("failed to connect to local tailscaled; it doesn't appear to be running")
    )
    result = expose("serve", path="/p", port=1, serve_path="/p", run=run)
    assert result["ok"] is False
    assert "doesn't appear to be running" in result["hint"]["note"]
    assert "enableUrl" not in result["hint"]


def test_no_dns_name_is_a_hint() -> None:
    run = FakeRun(status=ok(json.dumps({"Self": {"ID": NODE_ID, "DNSName": ""}})))
    result = expose("serve", path="/p", port=1, serve_path="/p", run=run)
    assert "no DNS name" in result["hint"]["note"]


# -- tailscale: off -------------------------------------------------------------------------


def test_off_runs_serve_off_and_funnel_off() -> None:
    run = FakeRun(off=failed("handler does not exist"))
    result = expose("off", path="/voice/webhook", port=3334, serve_path="/voice/webhook", run=run)
    assert run.calls == [
        ["tailscale", "serve", "off", "/voice/webhook"],
        ["tailscale", "funnel", "off", "/voice/webhook"],
    ]
    assert result == {"ok": True, "mode": "off", "path": "/voice/webhook"}


def test_off_without_tailscale_fails() -> None:
    result = unexpose("/p", run=FakeRun(off=FileNotFoundError("tailscale")))
    assert result["ok"] is False and result["hint"] == {"note": "tailscale not found"}


# -- tailscale: the serve-time exposure -------------------------------------------------------


def test_exposure_start_returns_the_origin_and_stop_unmounts() -> None:
    run = FakeRun()
    exposure = TailscaleExposure(
        "funnel",
        port=3334,
        path="/voice/webhook",
        serve_path="/voice/webhook",
        extra_paths=["/voice/stream"],
        run=run,
    )
    assert exposure.start() == ORIGIN
    run.calls.clear()
    exposure.stop()
    exposure.stop()
    assert run.calls == [
        ["tailscale", "funnel", "off", "/voice/stream"],
        ["tailscale", "funnel", "off", "/voice/webhook"],
    ]


def test_exposure_failure_is_one_sentence_with_the_enable_url() -> None:
    exposure = TailscaleExposure(
        "funnel",
        port=3334,
        path="/p",
        serve_path="/p",
        run=FakeRun(funnel=failed(FUNNEL_NOT_ENABLED)),
    )
    with pytest.raises(TunnelError) as caught:
        exposure.start()
    assert str(caught.value) == (
        "tailscale funnel failed (Funnel is not enabled on your tailnet.); "
        "enable it at https://login.tailscale.com/f/funnel?node=nFromOutput1"
    )
