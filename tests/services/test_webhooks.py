"""One carrier webhook end to end (calls/services/webhooks.py), without HTTP.

`webhook_process` is handed a WebhookRequest as the view would build it, on the mock
carrier: unverified requests are 401, unusable ones 400, a verified request is applied
once and its replay answered with the very same reply (docs/plugin-behaviour.md,
"Webhook pipeline").
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from calls.exceptions import CallError
from calls.models import Call, CallEvent, ReplayKey
from calls.services.webhooks import (
    REPLAY_TTL,
    carrier_readiness,
    replay_seen,
    webhook_explain,
    webhook_process,
)
from providers.base import VerifyResult, WebhookRequest

pytestmark = pytest.mark.django_db


def _request(body: bytes, **headers: str) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        url="http://127.0.0.1:3334/voice/webhook",
        path="/voice/webhook",
        query={},
        headers={"host": "127.0.0.1:3334", "content-type": "application/json", **headers},
        body=body,
        remote_addr="127.0.0.1",
    )


def _event(**item: Any) -> bytes:
    return json.dumps({"event": item}).encode()


# -- replay keys --------------------------------------------------------------------------------


def test_a_request_key_is_new_once_then_a_replay(fake_clock: Any) -> None:
    assert replay_seen(provider="mock", key="k-1") is False
    assert replay_seen(provider="mock", key="k-1") is True
    assert replay_seen(provider="mock", key="k-2") is False


def test_an_expired_key_is_a_new_delivery_again(fake_clock: Any) -> None:
    replay_seen(provider="mock", key="k-1")
    fake_clock.advance(seconds=REPLAY_TTL.total_seconds() - 1)
    assert replay_seen(provider="mock", key="k-1") is True
    fake_clock.advance(seconds=REPLAY_TTL.total_seconds())
    assert replay_seen(provider="mock", key="k-1") is False
    row = ReplayKey.objects.get(key="k-1")
    assert row.expires_at == fake_clock.now() + REPLAY_TTL


def test_a_new_key_is_recorded_with_its_provider_and_times(fake_clock: Any) -> None:
    assert replay_seen(provider="mock", key="k" * 250) is False
    row = ReplayKey.objects.get()
    assert (row.key, row.provider) == ("k" * 200, "mock")
    assert (row.created_at, row.expires_at) == (fake_clock.now(), fake_clock.now() + REPLAY_TTL)
    assert (row.reply_status, row.reply_body, row.reply_content_type) == (None, None, "")


def test_an_expired_key_taken_over_forgets_the_old_delivery_s_reply(fake_clock: Any) -> None:
    """The new delivery's replays must not get the old delivery's answer."""
    replay_seen(provider="mock", key="k-1")
    ReplayKey.objects.update(reply_status=200, reply_body=b"<old/>", reply_content_type="text/xml")
    fake_clock.advance(seconds=REPLAY_TTL.total_seconds())
    assert replay_seen(provider="mock", key="k-1") is False
    row = ReplayKey.objects.get(key="k-1")
    assert (row.reply_status, row.reply_body, row.reply_content_type) == (None, None, "")
    assert row.created_at == fake_clock.now()


# -- webhook_process ----------------------------------------------------------------------------


def test_a_verified_webhook_is_applied_and_its_replay_gets_the_same_reply(
    mock_carrier: Any, make_call: Any
) -> None:
    call = make_call(state="ringing")
    body = _event(type="call.answered", callId=call.call_id, id="evt-1")
    first = webhook_process(_request(body))
    assert first.status == 200 and json.loads(first.body)["callId"] == call.call_id
    assert Call.objects.get(pk=call.pk).state == "answered"

    again = webhook_process(_request(body))
    assert (again.status, again.body, again.content_type) == (
        first.status,
        first.body,
        first.content_type,
    )
    assert CallEvent.objects.filter(call=call).count() == 1
    assert ReplayKey.objects.get().reply_status == 200


def test_an_unverified_webhook_is_401_and_changes_nothing(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mock_carrier, "verify_webhook", lambda request: VerifyResult(ok=False, reason="bad sig")
    )
    call = make_call(state="ringing")
    reply = webhook_process(_request(_event(type="call.answered", callId=call.call_id)))
    assert (reply.status, reply.body) == (401, b"Unauthorized")
    assert Call.objects.get(pk=call.pk).state == "ringing"
    assert not ReplayKey.objects.exists()


def test_a_verified_request_without_an_identity_is_401(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mock_carrier, "verify_webhook", lambda request: VerifyResult(ok=True))
    assert webhook_process(_request(_event(type="call.answered", callId="x"))).status == 401


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", _event(type="call.exploded", callId="c")], ids=str
)
def test_an_unusable_body_is_400_and_records_nothing(mock_carrier: Any, body: bytes) -> None:
    reply = webhook_process(_request(body))
    assert reply.status == 400 and reply.body.startswith(b"Bad Request: ")
    assert not ReplayKey.objects.exists() and not Call.objects.exists()


def test_a_call_id_longer_than_its_column_is_400(mock_carrier: Any, configure: Any) -> None:
    configure({"inboundPolicy": "open"})
    body = _event(type="call.initiated", callId="7" * 129, direction="inbound", **{"from": "+1"})
    reply = webhook_process(_request(body))
    assert reply.status == 400 and b"call id longer than 128 characters" in reply.body
    assert not Call.objects.exists()


def test_events_without_their_own_key_are_keyed_by_the_request(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="ringing")
    monkeypatch.setattr(
        mock_carrier, "verify_webhook", lambda request: VerifyResult(ok=True, request_key="req-7")
    )
    body = json.dumps(
        {
            "events": [
                {"type": "call.answered", "callId": call.call_id},
                {"type": "call.speech", "callId": call.call_id, "transcript": "hi"},
            ]
        }
    ).encode()
    webhook_process(_request(body))
    keys = list(CallEvent.objects.order_by("pk").values_list("dedupe_key", flat=True))
    assert keys == ["req-7", "req-7#1"]


# -- setup and debugging -------------------------------------------------------------------------


def test_readiness_reports_a_carrier_that_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise CallError("Provider not initialized")

    monkeypatch.setattr("calls.services.webhooks.get_provider", broken)
    [(name, ok, message)] = carrier_readiness()
    assert (name, ok) == ("carrier", False) and message.startswith("Provider not initialized")


def test_explain_without_public_url_suggests_setting_it(
    mock_carrier: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        mock_carrier,
        "explain_webhook",
        lambda request: {"ok": False, "reason": "signature mismatch"},
    )
    report = webhook_explain(_request(b"{}", **{"x-forwarded-host": "voice.example.com"}))
    assert report["provider"] == "mock" and report["reason"] == "signature mismatch"
    assert any("forwarded host 'voice.example.com' was ignored" in h for h in report["hints"])
    assert any("publicUrl is not set" in h for h in report["hints"])


def test_explain_of_a_verifying_request_has_nothing_to_fix(mock_carrier: Any) -> None:
    report = webhook_explain(_request(b"{}"))
    assert report["ok"] is True
    assert report["hints"] == ["The signature verifies; nothing to fix."]


def test_replay_keys_live_at_least_ten_minutes() -> None:
    assert timedelta(minutes=10) <= REPLAY_TTL
