"""Public exposure of the local webhook server: ngrok, Tailscale serve/funnel.

docs/plugin-behaviour.md, "Start-up and the public URL" and "Command line".

Plain Python, no Django: `calls.exposure` starts these at `voicecall serve`, and the `expose`
subcommand calls `expose()` / `unexpose()`. Every external program runs through an injectable
`run` / `popen` callable, so tests never execute a real binary.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import httpx

logger = logging.getLogger(__name__)

Run = Callable[..., "subprocess.CompletedProcess[str]"]

NGROK_API_URL = "http://127.0.0.1:4040"
NGROK_START_TIMEOUT_S = 15.0
TAILSCALE_TIMEOUT_S = 20.0
FUNNEL_PORTS = (443, 8443, 10000)
TAILSCALE_MODES = ("serve", "funnel")
# Free ngrok accounts get a dev domain on ngrok-free.app (2023-2025) or ngrok-free.dev (since
# 2025, plugin issue #19487); legacy free tunnels were random *.ngrok.io names. *.ngrok.app
# and *.ngrok.dev are paid plans' domains (random or chosen), and anything else is a custom
# (paid) domain.
NGROK_FREE_SUFFIXES = ("ngrok-free.app", "ngrok-free.dev", "ngrok.io")
_ENABLE_URL = re.compile(r"https://login\.tailscale\.com/f/(?:serve|funnel)\?node=[\w-]+")
# Shell conventions for "could not run it" and "gave up waiting", kept apart from real exits.
NOT_FOUND, TIMED_OUT = 127, 124


class TunnelError(Exception):
    """The exposure could not be set up; the message is one sentence for the operator."""


class Process(Protocol):
    stdout: IO[str] | None

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


Popen = Callable[..., Process]


class Tunnel(ABC):
    """Something in front of 127.0.0.1:<port> that the internet (or the tailnet) can reach."""

    # Where the webhook is published when it differs from serve.path (Tailscale --set-path).
    public_path: str | None = None

    @abstractmethod
    def start(self) -> str:
        """Expose the server; returns the public base URL (scheme://host[:port], no path)."""

    @abstractmethod
    def stop(self) -> None:
        """Undo start(); safe to call twice, or after a failed start."""


def _hostname(url: str) -> str:
    """The lower-case hostname of a URL or a bare host ("abc.ngrok.app")."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    try:
        return (parts.hostname or "").rstrip(".")
    except ValueError:
        return ""


def is_ngrok_free_tier(url: str) -> bool:
    """Whether the URL's host is an ngrok free-tier name.

    By parsed hostname suffix, never substring (plugin PR #109784): `x.ngrok-free.app.evil.com`
    and `ngrok-free.app` itself are not ngrok tunnels.
    """
    host = _hostname(url)
    return any(host.endswith("." + suffix) for suffix in NGROK_FREE_SUFFIXES)


# -- ngrok -----------------------------------------------------------------------------------


class NgrokTunnel(Tunnel):
    """`ngrok http <port>` as a child process; the URL comes from the agent API /api/tunnels."""

    def __init__(
        self,
        port: int,
        *,
        authtoken: str | None = None,
        domain: str | None = None,
        binary: str = "ngrok",
        api_url: str = NGROK_API_URL,
        popen: Popen = subprocess.Popen,
        transport: httpx.BaseTransport | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = NGROK_START_TIMEOUT_S,
        poll_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.port, self.authtoken, self.binary = port, authtoken or None, binary
        self.domain = _hostname(domain) if domain else None
        self.api_url = api_url.rstrip("/")
        self._popen, self._transport, self._env = popen, transport, env
        self._timeout, self._poll_interval = timeout, poll_interval
        self._clock, self._sleep = clock, sleep
        self._process: Process | None = None
        self._log: _NgrokLog | None = None

    def argv(self) -> list[str]:
        # Plugin issue #11555: a configured (paid) domain must reach the agent, or ngrok
        # hands out a random URL that changes on every start and carrier signatures stop
        # matching.
        domain = ["--domain", self.domain] if self.domain else []
        return [
            self.binary,
            "http",
            str(self.port),
            *domain,
            "--log",
            "stdout",
            "--log-format",
            "json",
        ]

    def child_env(self) -> dict[str, str]:
        """This process's env plus NGROK_AUTHTOKEN: the token goes to the child only, never
        into os.environ or onto the command line (where `ps` would show it)."""
        env = dict(os.environ if self._env is None else self._env)
        if self.authtoken:
            env["NGROK_AUTHTOKEN"] = self.authtoken
        return env

    def start(self) -> str:
        try:
            # stdout is a pipe we drain: if this process dies without stop(), ngrok's next log
            # line hits a closed pipe and the Go runtime exits on SIGPIPE; no orphan tunnel.
            self._process = self._popen(
                self.argv(),
                env=self.child_env(),
                text=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise TunnelError(f"ngrok could not be started ({exc})") from exc
        self._log = _NgrokLog(self._process.stdout)
        try:
            url = self._wait_for_url()
            self._check_domain(url)
        except TunnelError:
            self.stop()
            raise
        logger.info(
            "ngrok tunnel %s -> 127.0.0.1:%s (%s)",
            url,
            self.port,
            "free tier" if is_ngrok_free_tier(url) else "paid or custom domain",
        )
        return url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _wait_for_url(self) -> str:
        assert self._process is not None and self._log is not None
        deadline = self._clock() + self._timeout
        with httpx.Client(transport=self._transport, timeout=2.0) as http:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._log.join(timeout=1.0)
                    reason = self._log.last_error or f"exit code {code}"
                    raise TunnelError(f"ngrok exited before the tunnel was up: {reason}")
                url = self._public_url(http)
                if url:
                    return url
                if self._clock() >= deadline:
                    raise TunnelError(
                        f"ngrok did not report a public URL within {self._timeout:g} s "
                        f"(agent API {self._api_base()}/api/tunnels)"
                    )
                self._sleep(self._poll_interval)

    def _api_base(self) -> str:
        # When 4040 is taken (another agent), ngrok picks another port and logs where.
        assert self._log is not None
        return f"http://{self._log.web_addr}" if self._log.web_addr else self.api_url

    def _public_url(self, http: httpx.Client) -> str | None:
        try:
            response = http.get(f"{self._api_base()}/api/tunnels")
            tunnels = response.json().get("tunnels") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None  # the agent API is not up yet
        return pick_tunnel_url(tunnels or [], port=self.port)

    def _check_domain(self, url: str) -> None:
        if self.domain and _hostname(url) != self.domain:
            raise TunnelError(
                f"ngrok started {url} instead of the configured domain {self.domain}; check "
                "that tunnel.ngrokAuthToken belongs to the account that owns that domain"
            )


def pick_tunnel_url(tunnels: Sequence[Any], *, port: int) -> str | None:
    """The https public_url of the tunnel forwarding to our port (agent API shape:
    {"tunnels": [{"public_url", "proto", "config": {"addr": "http://localhost:3334"}}]})."""
    ours = [t for t in tunnels if isinstance(t, dict) and _forwards_to(t, port)]
    ours.sort(key=lambda t: str(t.get("public_url", "")).startswith("https://"), reverse=True)
    url = ours[0].get("public_url") if ours else None
    return url.rstrip("/") if isinstance(url, str) and url.startswith("http") else None


def _forwards_to(tunnel: dict[str, Any], port: int) -> bool:
    # Another agent may share the API; only a tunnel to our port is ours.
    config = tunnel.get("config")
    addr = str(config.get("addr", "")) if isinstance(config, dict) else ""
    return addr == str(port) or addr.rstrip("/").endswith(f":{port}")


class _NgrokLog:
    """Drains ngrok's JSON log lines (a full pipe would stall the agent) and keeps what
    start() needs: the last error, and the web (agent API) address."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.last_error: str | None = None
        self.web_addr: str | None = None
        self._thread = threading.Thread(
            target=self._drain, args=(stream,), name="ngrok-log", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _drain(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self._record(line.strip())

    def _record(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            if line:
                logger.debug("ngrok: %s", line)
            return
        if entry.get("msg") == "starting web service" and entry.get("addr"):
            self.web_addr = str(entry["addr"])
        if entry.get("lvl") in ("eror", "crit", "error"):
            self.last_error = str(entry.get("err") or entry.get("msg"))
            logger.warning("ngrok: %s", self.last_error)


# -- Tailscale -------------------------------------------------------------------------------


def normalize_mode(mode: str | None) -> str:
    """off, serve or funnel; anything else means funnel, as in the plugin's CLI."""
    return mode if mode in ("off", *TAILSCALE_MODES) else "funnel"


def local_url(port: int, serve_path: str) -> str:
    return f"http://127.0.0.1:{port}{serve_path}"


def tailscale_argv(
    mode: str, *, path: str, target: str, https_port: int = 443, binary: str = "tailscale"
) -> list[str]:
    """`tailscale <mode> --bg --yes [--https <port>] --set-path <path> <target>`.

    The plugin's command line (docs/plugin-behaviour.md, "Command line").
    """
    https = ["--https", str(https_port)] if https_port != 443 else []
    return [binary, mode, "--bg", "--yes", *https, "--set-path", path, target]


def _run(run: Run, argv: list[str], timeout: float) -> tuple[int, str]:
    """(exit code, combined output); a missing binary or a hang is a failure, not a crash.

    `tailscale serve --bg` waits forever for approval when Serve/Funnel is not enabled on
    the tailnet, after printing the enable link, so every call has a timeout.
    """
    try:
        done = run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return NOT_FOUND, f"{argv[0]} not found"
    except subprocess.TimeoutExpired as exc:
        return TIMED_OUT, f"{_text(exc.stdout)}{_text(exc.stderr)}timed out after {timeout:g} s"
    return done.returncode, f"{done.stdout or ''}{done.stderr or ''}"


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def tailscale_status(
    *, binary: str = "tailscale", run: Run = subprocess.run, timeout: float = TAILSCALE_TIMEOUT_S
) -> dict[str, Any]:
    """`tailscale status --json`; raises TunnelError when Tailscale is missing or down."""
    code, output = _run(run, [binary, "status", "--json"], timeout)
    try:
        status = json.loads(output) if code == 0 else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise TunnelError(f"tailscale status failed: {_summary(output) or f'exit {code}'}")
    return status


def tailscale_origin(status: Mapping[str, Any], https_port: int = 443) -> str:
    """https://<Self.DNSName>[:port]; non-default ports appear in the URL, as in the plugin."""
    this = found if isinstance(found := status.get("Self"), dict) else {}
    host = str(this.get("DNSName") or "").rstrip(".")
    if not host:
        raise TunnelError(
            "tailscale status has no DNS name for this node "
            "(is MagicDNS on and the node logged in?)"
        )
    return f"https://{host}" + (f":{https_port}" if https_port != 443 else "")


def enable_url(mode: str, status: Mapping[str, Any] | None, output: str = "") -> str | None:
    """The admin link that turns Serve/Funnel on: tailscale's own, else built from Self.ID."""
    if found := _ENABLE_URL.search(output):
        return found.group(0)
    this = (status or {}).get("Self")
    node = this.get("ID") if isinstance(this, dict) else None
    return f"https://login.tailscale.com/f/{mode}?node={node}" if node else None


def _summary(output: str) -> str:
    """tailscale's message on one line, without the link and its "To enable, visit:" lead."""
    lines = [line.strip() for line in output.splitlines()]
    said = [
        line
        for line in lines
        if line and not line.startswith("https://") and not line.endswith(":")
    ]
    return " ".join(said)[:300]


class TailscaleExposure(Tunnel):
    """`tailscale serve|funnel --bg` for the webhook path (plus identity routes for extra
    paths such as the media stream), removed again on stop()."""

    def __init__(
        self,
        mode: str,
        *,
        port: int,
        path: str,
        serve_path: str,
        https_port: int = 443,
        extra_paths: Sequence[str] = (),
        binary: str = "tailscale",
        run: Run = subprocess.run,
        timeout: float = TAILSCALE_TIMEOUT_S,
    ) -> None:
        if mode not in TAILSCALE_MODES:
            raise ValueError(f"tailscale mode must be serve or funnel, not {mode!r}")
        self.mode, self.port, self.https_port = mode, port, https_port
        self.path, self.serve_path, self.public_path = path, serve_path, path
        self.routes = [(path, serve_path)] + [(p, p) for p in extra_paths if p != path]
        self.binary, self._run, self._timeout = binary, run, timeout
        self._mounted: list[str] = []
        self.status: dict[str, Any] | None = None

    def start(self) -> str:
        if self.mode == "funnel" and self.https_port not in FUNNEL_PORTS:
            raise TunnelError("Tailscale Funnel HTTPS port must be one of 443, 8443, 10000")
        self.status = tailscale_status(binary=self.binary, run=self._run, timeout=self._timeout)
        origin = tailscale_origin(self.status, self.https_port)
        for public, local in self.routes:
            self._mount(public, local)
        logger.info(
            "tailscale %s %s%s -> %s",
            self.mode,
            origin,
            self.path,
            local_url(self.port, self.serve_path),
        )
        return origin

    def stop(self) -> None:
        mounted, self._mounted = self._mounted, []
        for path in reversed(mounted):
            _run(self._run, [self.binary, self.mode, "off", path], self._timeout)

    def _mount(self, public: str, local: str) -> None:
        argv = tailscale_argv(
            self.mode,
            path=public,
            target=local_url(self.port, local),
            https_port=self.https_port,
            binary=self.binary,
        )
        code, output = _run(self._run, argv, self._timeout)
        if code != 0:
            self.stop()  # [latest]: roll back the routes already mounted
            raise TailscaleError(self.mode, output, enable_url(self.mode, self.status, output))
        self._mounted.append(public)


class TailscaleError(TunnelError):
    """tailscale serve/funnel refused; carries the admin link that enables it."""

    def __init__(self, mode: str, output: str, enable: str | None) -> None:
        self.mode, self.enable_url = mode, enable
        detail = _summary(output) or "no output"
        self.note = (
            f"tailscale {mode} failed ({detail}). {mode.capitalize()} may not be "
            "enabled for this tailnet or node; an admin can enable it at enableUrl, "
            "then run this again."
        )
        where = f"; enable it at {enable}" if enable else ""
        super().__init__(f"tailscale {mode} failed ({detail}){where}")


def expose(
    mode: str | None,
    *,
    path: str,
    port: int,
    serve_path: str,
    https_port: int = 443,
    extra_paths: Sequence[str] = (),
    binary: str = "tailscale",
    run: Run = subprocess.run,
) -> dict[str, Any]:
    """`voicecall expose`: {ok, mode, path, localUrl, publicUrl, hint?}.

    docs/plugin-behaviour.md, "Command line".
    """
    mode = normalize_mode(mode)
    if mode == "off":
        return unexpose(path, extra_paths=extra_paths, binary=binary, run=run)
    exposure = TailscaleExposure(
        mode,
        port=port,
        path=path,
        serve_path=serve_path,
        https_port=https_port,
        extra_paths=extra_paths,
        binary=binary,
        run=run,
    )
    result: dict[str, Any] = {
        "ok": False,
        "mode": mode,
        "path": path,
        "localUrl": local_url(port, serve_path),
        "publicUrl": None,
    }
    try:
        result["publicUrl"] = exposure.start() + path
    except TailscaleError as exc:
        result["hint"] = {
            "note": exc.note,
            **({"enableUrl": exc.enable_url} if exc.enable_url else {}),
        }
        return result
    except TunnelError as exc:
        result["hint"] = {"note": str(exc)}
        return result
    result["ok"] = True
    return result


def unexpose(
    path: str,
    *,
    extra_paths: Sequence[str] = (),
    binary: str = "tailscale",
    run: Run = subprocess.run,
) -> dict[str, Any]:
    """`expose --mode off`: `tailscale serve off <path>` and `tailscale funnel off <path>`.

    A route lives under one of the two, so the other one failing is expected; only a
    missing tailscale binary makes this fail.
    """
    for target in (path, *[p for p in extra_paths if p != path]):
        for mode in TAILSCALE_MODES:
            code, output = _run(run, [binary, mode, "off", target], TAILSCALE_TIMEOUT_S)
            if code == NOT_FOUND:
                return {"ok": False, "mode": "off", "path": path, "hint": {"note": output}}
    return {"ok": True, "mode": "off", "path": path}
