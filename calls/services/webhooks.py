"""One carrier webhook, end to end: verify, recognise replays, apply events, render the reply."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.db import connection

from calls import clock, metrics
from calls.carrier import get_provider, provider_settings
from calls.config import get_config
from calls.drain import draining
from calls.exceptions import CallError, ServiceDisabled
from calls.faults import crash_point
from calls.models import Call, ReplayKey
from calls.selectors import call_find
from calls.services.enabled import service_enabled
from calls.services.events import EventOutcome, event_apply, event_opens_call
from calls.services.outbox import outbox_unit
from calls.services.speech import InlineReply, pending_speech_take
from calls.services.stream_plans import stream_or_hold
from calls.services.transfer import transfer_document
from providers.base import NormalizedEvent, Reply, ReplyContext, WebhookRequest
from providers.errors import WebhookInvalid
from providers.webhook_security import (
    FORWARDED_HOST_HEADERS,
    SecuritySettings,
    forwarding_trusted,
)

logger = logging.getLogger(__name__)

# Verified request identities are remembered at least 10 minutes
# (docs/plugin-behaviour.md, "Webhook pipeline").
REPLAY_TTL = timedelta(minutes=10)


def replay_seen(*, provider: str, key: str) -> bool:
    """Record a verified request key; True when it was already recorded (a replay).

    One statement and no savepoint (docs/performance.md, "Webhook path"): a new key is
    inserted; an expired key is a new delivery, not a replay, so it is taken over and the
    old delivery's reply forgotten; a live key is left alone and no row comes back. A
    concurrent first delivery of the same key holds its row until it commits, so this waits
    and then sees it.
    """
    now = clock.now()
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            _record_key_sql(),
            [key[:200], provider, adapt(now), adapt(now + REPLAY_TTL), adapt(now)],
        )
        return cursor.fetchone() is None


def _record_key_sql() -> str:
    q = connection.ops.quote_name
    table = q(ReplayKey._meta.db_table)
    return (
        f"INSERT INTO {table} ({q('key')}, {q('provider')}, {q('created_at')}, "
        f"{q('expires_at')}, {q('reply_content_type')}) VALUES (%s, %s, %s, %s, '') "
        f"ON CONFLICT ({q('key')}) DO UPDATE SET {q('created_at')} = excluded.{q('created_at')}, "
        f"{q('expires_at')} = excluded.{q('expires_at')}, {q('reply_status')} = NULL, "
        f"{q('reply_body')} = NULL, {q('reply_content_type')} = '' "
        f"WHERE {table}.{q('expires_at')} <= %s RETURNING {q('id')}"
    )


def webhook_process(request: WebhookRequest) -> Reply:
    """Verify and apply a carrier webhook; carrier input never produces a 500.

    The replay key, the events, their effects and the reply kept for re-deliveries commit
    as one unit: a crash anywhere before the commit leaves no trace, so the carrier's
    redelivery is applied as new; after it, the key answers the redelivery with the same
    reply and the outbox still sends what the events owe the carrier (docs/security.md).
    Every webhook is counted with the status it was answered (500 when an error escaped).
    """
    started = time.perf_counter()
    status = 500
    try:
        reply = _webhook_handle(request)
        status = reply.status
        return reply
    finally:
        metrics.webhook_handled(
            provider=get_config().provider or "",
            status=status,
            seconds=time.perf_counter() - started,
        )


def _webhook_handle(request: WebhookRequest) -> Reply:
    if not service_enabled():
        # Before the carrier adapter, which a disabled config need not be able to build;
        # nothing is recorded, so the carrier's fallback URL or retry gets the call.
        return Reply(status=503, body=f"Service Unavailable: {ServiceDisabled.MESSAGE}".encode())
    provider = get_provider()
    verified = provider.verify_webhook(request)
    if not verified.ok or not verified.request_key:
        logger.warning(
            "webhook rejected provider=%s: %s",
            provider.name,
            verified.reason or "no request identity",
        )
        return Reply(status=401, body=b"Unauthorized")
    try:
        events = provider.parse_webhook(request)
        _check_ids(events)
    except WebhookInvalid as exc:
        return Reply(status=400, body=f"Bad Request: {exc}".encode())
    if draining() and any(event_opens_call(provider=provider.name, event=e) for e in events):
        # A new call belongs on a process that is not shutting down; nothing is recorded,
        # so the carrier's retry elsewhere is applied as new (docs/architecture.md,
        # "Graceful drain"). Webhooks about calls we track are applied as ever.
        logger.info("webhook for a new call refused while draining provider=%s", provider.name)
        return Reply(status=503, body=b"Service Unavailable: draining")
    key = verified.request_key
    with outbox_unit():
        if replay_seen(provider=provider.name, key=key):
            logger.info(
                "webhook replay provider=%s acknowledged without side effects", provider.name
            )
            return _replayed_reply(key) or provider.render_reply(request, ReplyContext(replay=True))
        crash_point("webhook.recorded")
        inline = InlineReply() if provider.can_speak_in_reply(request) else None
        outcomes = [
            event_apply(provider=provider.name, event=_keyed(event, key, i), inline=inline)
            for i, event in enumerate(events)
        ]
        fetched = call_find(provider.fetch_call_id(request))
        if inline is not None and inline.speech is None and fetched and not fetched.is_terminal:
            inline.speech = pending_speech_take(fetched)
        context = _context(outcomes, events, inline, fetched)
        # A cold transfer's document fetch (Plivo): what to say and dial waits on the row.
        transfer = transfer_document(provider.transfer_fetch_call_id(request))
        if transfer is not None:
            context = replace(context, transfer=transfer)
        reply = provider.render_reply(request, context)
        if reply != provider.render_reply(request, ReplyContext(replay=True)):
            # Kept only when a re-delivery could not render it by itself (a status
            # callback's empty reply it can): one write fewer per callback.
            _remember_reply(key, reply)
        crash_point("webhook.applied")
    return reply


def _check_ids(events: list[NormalizedEvent]) -> None:
    """Ids longer than the columns that hold them are bad input (400), not a database error."""
    limit = Call._meta.get_field("provider_call_id").max_length or 128
    for event in events:
        if len(event.provider_call_id or "") > limit or len(event.call_id or "") > limit:
            raise WebhookInvalid(f"call id longer than {limit} characters")


def _remember_reply(key: str, reply: Reply) -> None:
    ReplayKey.objects.filter(key=key[:200]).update(
        reply_status=reply.status, reply_body=reply.body, reply_content_type=reply.content_type
    )


def _replayed_reply(key: str) -> Reply | None:
    row = ReplayKey.objects.filter(key=key[:200], reply_status__isnull=False).first()
    if row is None:
        return None  # the first delivery is still being handled
    return Reply(
        status=row.reply_status or 200,
        body=bytes(row.reply_body or b""),
        content_type=row.reply_content_type or "text/plain",
    )


def _keyed(event: NormalizedEvent, request_key: str, index: int) -> NormalizedEvent:
    """Events without their own dedupe key are identified by the verified request."""
    if event.dedupe_key:
        return event
    return replace(event, dedupe_key=request_key if index == 0 else f"{request_key}#{index}")


def _context(
    outcomes: list[EventOutcome],
    events: list[NormalizedEvent],
    inline: InlineReply | None,
    fetched: Call | None,
) -> ReplyContext:
    # A document fetch carries no events; the call it names is still the reply's call.
    call = next((o.call for o in outcomes if o.call is not None), fetched)
    if call is not None and inline is not None:
        # Only a document the carrier executes depends on the freshest row (another
        # process may have attached a stream); status replies are empty anyway.
        call.refresh_from_db(fields=["state", "mode", "direction", "stream_id", "stream_token"])
    speech = inline.speech if inline else None
    # A document fetch for a live call with nothing to say (and no notify hang-up to do)
    # connects its media stream (or parks an inbound caller while another stream holds the
    # line).
    plan, hold = (
        stream_or_hold(call)
        if call and inline is not None and speech is None and inline.hang_up_after is None
        else (None, False)
    )
    return ReplyContext(
        call_id=call.call_id if call else None,
        mode=call.mode if call else None,
        direction=call.direction if call else None,
        state=call.state if call else None,
        known=call is not None,
        rejected=any(o.rejected for o in outcomes),
        accepted_inbound=any(o.accepted_inbound for o in outcomes),
        speech=speech,
        stream=plan,
        hold=hold,
        hang_up_after=inline.hang_up_after if inline else None,
        events=tuple(events),
    )


def carrier_readiness() -> list[tuple[str, bool, str]]:
    """The configured carrier's own `voicecall setup` checks."""
    try:
        provider = get_provider()
    except CallError as exc:
        return [("carrier", False, f"{exc.message}: {exc.__cause__ or ''}".strip())]
    return provider.readiness()


def webhook_explain(request: WebhookRequest) -> dict[str, Any]:
    """Why a captured webhook verifies or not (`voicecall webhook-debug`), with hints."""
    provider = get_provider()
    report = {"provider": provider.name, **provider.explain_webhook(request)}
    report["hints"] = _hints(request, report)
    return report


def _hints(request: WebhookRequest, report: dict[str, Any]) -> list[str]:
    cfg = get_config()
    security = SecuritySettings.from_settings(provider_settings(cfg))
    hints: list[str] = []
    forwarded = next((request.header(h) for h in FORWARDED_HOST_HEADERS if request.header(h)), None)
    if forwarded and not forwarding_trusted(request, security):
        hints.append(
            f"The forwarded host {forwarded!r} was ignored: forwarding headers count only with "
            "webhookSecurity.allowedHosts or trustForwardingHeaders (and, when set, a peer in "
            "trustedProxyIPs). Set allowedHosts to your public host, or set publicUrl."
        )
    if not cfg.public_url:
        hints.append(
            "publicUrl is not set, so the URL is rebuilt from the request (https, no "
            "port). Setting publicUrl to the exact URL the carrier calls is the most "
            "reliable fix."
        )
    if report.get("ok"):
        hints = ["The signature verifies; nothing to fix."]
    elif not report.get("reason"):
        hints.append("The carrier's signature headers are missing from the capture.")
    return hints
