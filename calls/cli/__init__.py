"""The `voicecall` command line's local work: following call events and API tokens.

Live-call operations go through `calls.cli.client`; readiness checks live in
`calls.cli.setup_checks`. The management command only parses and prints.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.core.management.base import CommandError
from django.db.models import QuerySet

from calls import clock
from calls.exceptions import CallError
from calls.models import ApiToken, CallEvent
from calls.selectors import api_tokens, event_list, iso_time
from calls.services.tokens import token_create, token_revoke
from providers.base import WebhookRequest

# Rows committed out of id order (concurrent writers on PostgreSQL) land behind the
# cursor; re-reading this many ids back catches them without printing anything twice.
_LOOKBACK_IDS = 200


def event_line(event: CallEvent) -> dict[str, Any]:
    return {
        "callId": str(event.call.public_id),
        "type": event.type,
        "payload": event.payload,
        "at": iso_time(event.created_at),
    }


def _events(call_id: str | None) -> QuerySet[CallEvent]:
    try:
        return event_list(call_id=call_id)
    except CallError as exc:
        raise CommandError(exc.message) from exc


def events_tail(
    *, call_id: str | None, since: int, follow: bool, poll_ms: int, stop: threading.Event
) -> Iterator[dict[str, Any]]:
    """The last `since` events, then (following) new ones as they are recorded."""
    events = _events(call_id)
    backlog = list(events.order_by("-id")[:since])[::-1]
    yield from map(event_line, backlog)
    if not follow:
        return
    newest = events.order_by("-id").values_list("id", flat=True).first() or 0
    start = cursor = backlog[-1].id if backlog else newest
    seen: set[int] = set()
    while not stop.is_set():
        clock.sleep(poll_ms / 1000)
        floor = max(start, cursor - _LOOKBACK_IDS)
        fresh = [e for e in events.filter(id__gt=floor).order_by("id") if e.id not in seen]
        for event in fresh:
            seen.add(event.id)
            cursor = max(cursor, event.id)
            yield event_line(event)
        seen = {i for i in seen if i > cursor - _LOOKBACK_IDS}


@contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets `stop`, so a follow loop ends after the line it is printing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def token_row(token: ApiToken) -> dict[str, Any]:
    """A token without its secret (only the prefix shown at creation)."""
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "createdAt": iso_time(token.created_at),
        "expiresAt": iso_time(token.expires_at),
        "lastUsedAt": iso_time(token.last_used_at),
        "revokedAt": iso_time(token.revoked_at),
        "usable": token.is_usable,
    }


def token_issue(*, name: str, ttl_hours: float | None) -> dict[str, Any]:
    """Create a token; the only time its secret is shown."""
    if ttl_hours is not None and ttl_hours <= 0:
        raise CommandError("--ttl-hours must be a positive number")
    ttl = timedelta(hours=ttl_hours) if ttl_hours is not None else None
    try:
        created = token_create(name=name, ttl=ttl)
    except CallError as exc:
        raise CommandError(exc.message) from exc
    return {
        "id": created.token.pk,
        "name": created.token.name,
        "token": created.secret,
        "expiresAt": iso_time(created.token.expires_at),
    }


def token_list() -> list[dict[str, Any]]:
    return [token_row(token) for token in api_tokens()]


def token_withdraw(*, token_id: int) -> dict[str, Any]:
    try:
        return token_row(token_revoke(token_id=token_id))
    except CallError as exc:
        raise CommandError(exc.message) from exc


def captured_request(
    *,
    capture: str | None,
    url: str | None,
    method: str,
    header: list[str],
    body: str,
    body_file: str | None,
    remote_addr: str | None,
    **_: Any,
) -> WebhookRequest:
    """A WebhookRequest from `webhook-debug` flags or a capture file; CommandError if incomplete."""
    if capture:
        try:
            with open(capture, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read capture {capture}: {exc}") from exc
        url, method = data.get("url"), data.get("method", "POST")
        headers = {str(k).lower(): str(v) for k, v in (data.get("headers") or {}).items()}
        raw = str(data.get("body") or "").encode()
        remote_addr = data.get("remoteAddr")
    else:
        headers = dict(_header(line) for line in header)
        raw = Path(body_file).read_bytes() if body_file else body.encode()
    if not url:
        raise CommandError("webhook-debug needs --url (or a capture file with url)")
    parts = urlsplit(url)
    headers.setdefault("host", parts.netloc)
    return WebhookRequest(
        method=method.upper(),
        url=url,
        path=parts.path or "/",
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=raw,
        remote_addr=remote_addr,
    )


def _header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip():
        raise CommandError(f"--header must look like 'Name: value', not {line!r}")
    return name.strip().lower(), value.strip()
