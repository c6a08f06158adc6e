"""How live-call commands reach the voicecall.* methods: the running server, else in-process.

A server that answers /healthz owns the call; from then on every failure is an error naming
that server, never a silent switch to in-process (docs/design.md, "10. Command line").
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError

from calls.api.methods import call_method
from calls.config import ConfigError, VoiceCallConfig, get_config
from calls.exceptions import CallError
from calls.services.tokens import token_authenticate, token_create

HEALTH_TIMEOUT_S = 1.0
RPC_TIMEOUT_S = 30.0
CONTINUE_POLL_S = 0.25
# Margin over transcriptTimeoutMs before the CLI stops waiting for a continue result.
CONTINUE_GRACE_S = 30.0
DEFAULT_TRANSCRIPT_TIMEOUT_MS = 180_000
# The CLI's own token, kept in the data dir and reused by every command until it expires or
# is revoked, so the admin's token list does not fill with one row per command.
TOKEN_TTL = timedelta(days=30)
TOKEN_FILE = "cli-token"
TOKEN_NAME = "cli (this host)"
METHOD_NOT_FOUND = "METHOD_NOT_FOUND"
_JSONRPC_METHOD_NOT_FOUND = -32601

Params = dict[str, Any]


def _no_transport() -> httpx.BaseTransport | None:
    return None


# Seam for tests: return an httpx.MockTransport; None means the real network.
TRANSPORT_FACTORY: Callable[[], httpx.BaseTransport | None] = _no_transport


class RpcError(Exception):
    """A method the service refused; connect() turns it into a CommandError."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Backend(Protocol):
    def call(
        self, method: str, params: Params, *, timeout: float = RPC_TIMEOUT_S
    ) -> dict[str, Any]: ...


PLACING_METHODS = ("voicecall.initiate", "voicecall.start")


class InProcessBackend:
    """Runs the methods in this process against the shared database."""

    def call(
        self, method: str, params: Params, *, timeout: float = RPC_TIMEOUT_S
    ) -> dict[str, Any]:
        try:
            result = call_method(method, params)
        except CallError as exc:
            raise RpcError(exc.message, code=exc.code) from exc
        if method in PLACING_METHODS:
            # Not silent: the carrier's webhooks and the call's timers need a server.
            sys.stderr.write(
                "warning: no voicecall server is running; the call was placed "
                "in-process and its webhooks and timers need `voicecall serve`\n"
            )
        return result


class RemoteBackend:
    """JSON-RPC 2.0 over POST {base}/api/rpc with a bearer token."""

    def __init__(
        self,
        *,
        base_url: str,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
        trust_env: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        options: dict[str, Any] = {"base_url": self.base_url, "trust_env": trust_env}
        if transport is not None:  # an explicit None would bypass httpx's default transport
            options["transport"] = transport
        self._http = httpx.Client(**options)
        self._token = token
        self._ids = itertools.count(1)

    def reachable(self) -> bool:
        """False only when nothing accepts the connection; any other failure is an error."""
        try:
            response = self._http.get("/healthz", timeout=HEALTH_TIMEOUT_S)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            return False
        except httpx.TransportError as exc:
            raise self._error(f"did not answer /healthz ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise self._error(f"answered /healthz with HTTP {response.status_code}")
        return True

    def call(
        self, method: str, params: Params, *, timeout: float = RPC_TIMEOUT_S
    ) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        headers = {"Authorization": f"Bearer {self._bearer()}"}
        try:
            response = self._http.post("/api/rpc", json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise self._error(f"did not answer {method} within {timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise self._error(f"failed during {method} ({type(exc).__name__})") from exc
        return self._result(method, response)

    def _result(self, method: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 401:
            raise self._error("refused the API token (HTTP 401); set VOICECALL_API_TOKEN")
        if response.status_code != 200:
            raise self._error(f"answered {method} with HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
            raise _rpc_error(reply["error"])
        if not isinstance(reply, dict) or not isinstance(reply.get("result"), dict):
            raise self._error(f"sent an unreadable answer to {method}")
        return reply["result"]

    def _bearer(self) -> str:
        if not self._token:
            try:
                self._token = local_token()
            except DatabaseError as exc:
                raise CommandError(
                    f"Could not create a CLI token in the database ({exc}); "
                    "set VOICECALL_API_TOKEN."
                ) from exc
        return self._token

    def _error(self, what: str) -> CommandError:
        return CommandError(f"The voicecall server at {self.base_url} {what}.")

    def close(self) -> None:
        self._http.close()


def local_token() -> str:
    """The CLI's token for the server on this host: the one kept in the data dir while it
    is still usable, else a new one written there (owner-only: anyone who can read the data
    dir can read the SQLite database too)."""
    path = Path(settings.DATA_DIR) / TOKEN_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        kept = ""
    if kept and token_authenticate(kept) not in (None, "env"):
        return kept
    created = token_create(name=TOKEN_NAME, ttl=TOKEN_TTL)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left from before keeps its mode otherwise
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(created.secret)
    return created.secret


def _rpc_error(error: dict[str, Any]) -> RpcError:
    data = found if isinstance(found := error.get("data"), dict) else {}
    code = METHOD_NOT_FOUND if error.get("code") == _JSONRPC_METHOD_NOT_FOUND else data.get("code")
    return RpcError(str(error.get("message") or "RPC error"), code=code)


def config_or_error() -> VoiceCallConfig:
    try:
        return get_config()
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc


def server_url() -> tuple[str, bool]:
    """(base URL, whether it came from VOICECALL_SERVER_URL)."""
    explicit = os.environ.get("VOICECALL_SERVER_URL", "").strip()
    if explicit:
        if not explicit.startswith(("http://", "https://")):
            raise CommandError("VOICECALL_SERVER_URL must be an http(s) URL.")
        return explicit.rstrip("/"), True
    cfg = config_or_error()
    host = cfg.serve_bind
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.serve_port}", False


def _env_token() -> str | None:
    return (
        os.environ.get("VOICECALL_API_TOKEN")
        or getattr(settings, "VOICECALL_API_TOKEN", "")
        or None
    )


@contextmanager
def connect() -> Iterator[Backend]:
    """The running server's API when one answers /healthz, else in-process."""
    base_url, explicit = server_url()
    # A local server address must not be sent through an HTTP(S)_PROXY from the env.
    remote = RemoteBackend(
        base_url=base_url, transport=TRANSPORT_FACTORY(), token=_env_token(), trust_env=explicit
    )
    try:
        yield remote if remote.reachable() else InProcessBackend()
    except RpcError as exc:
        raise CommandError(exc.message) from exc
    finally:
        remote.close()


def rpc(method: str, params: Params) -> dict[str, Any]:
    """One method call through connect()."""
    with connect() as backend:
        return backend.call(method, params)


def continue_turn(*, call_id: str, message: str) -> dict[str, Any]:
    """`continue`: start the turn in the background and poll its result.

    As the plugin's latest CLI does (docs/plugin-behaviour.md, "Command line").
    """
    params = {"callId": call_id, "message": message}
    budget = _turn_budget()
    with connect() as backend:
        try:
            started = backend.call("voicecall.continue.start", params)
        except RpcError as exc:
            if exc.code != METHOD_NOT_FOUND:
                raise
            # A server without background turns: one long request instead.
            return _outcome(backend.call("voicecall.continue", params, timeout=budget))
        return _poll(backend, operation_id=str(started.get("operationId")), budget=budget)


def _turn_budget() -> float:
    try:
        timeout_ms = get_config().transcript_timeout_ms
    except ConfigError:  # a remote server with its own config can still run the turn
        timeout_ms = DEFAULT_TRANSCRIPT_TIMEOUT_MS
    return timeout_ms / 1000 + CONTINUE_GRACE_S


def _poll(backend: Backend, *, operation_id: str, budget: float) -> dict[str, Any]:
    give_up = time.monotonic() + budget
    while True:
        result = backend.call("voicecall.continue.result", {"operationId": operation_id})
        if result.get("status") != "pending":
            return _outcome(result)
        if time.monotonic() >= give_up:
            raise CommandError(
                f"No result for continue operation {operation_id} after {budget:g} s."
            )
        time.sleep(CONTINUE_POLL_S)


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    if result.get("success") is False or result.get("status") == "failed":
        raise CommandError(str(result.get("error") or "continue failed"))
    return {"success": True, "transcript": result.get("transcript", "")}
