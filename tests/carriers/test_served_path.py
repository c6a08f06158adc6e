"""The webhook path as served: its database cost, its reused worker threads, its edges.

docs/performance.md, "Webhook path". Counts are of SQL statements, not of time: a
statement more per callback is a regression this file catches; how fast the path runs is
measured by bench/webhook_throughput.py, never asserted here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext

from calls.db_threads import DatabaseWorkers, connections_checked
from calls.models import Call, CallEvent, ReplayKey
from calls.web import webhook_views
from calls.web.api_endpoint import ApiEndpoint, ApiRouter
from calls.web.gate import WebhookGate
from calls.web.webhook_views import WebhookEndpoint
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import CALLEE, OUR_NUMBER, PUBLIC_HOST, PUBLIC_URL
from tests.fakes.carriers.twilio import TWILIO_ACCOUNT, TwilioDriver
from tests.fakes.served import ServedClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def twilio(start_carrier: Carrier) -> TwilioDriver:
    driver = start_carrier.start()
    assert isinstance(driver, TwilioDriver)
    return driver


def dialled(make_call: Any, **fields: Any) -> Call:
    """An outbound Twilio call we placed, waiting for its ringing callback."""
    call: Call = make_call(
        provider="twilio",
        provider_call_id="CA" + "1" * 32,
        state="initiated",
        from_number=OUR_NUMBER,
        to_number=CALLEE,
        **fields,
    )
    return call


def statements(context: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split(" (")[0][:60] for q in context.captured_queries]


# --- what one callback costs --------------------------------------------------------------------


def test_a_signed_status_callback_is_one_transaction_of_six_statements(
    twilio: TwilioDriver, make_call: Any
) -> None:
    """Replay key (one upsert), call read, event row (one insert that skips a duplicate:
    its constraint decides "seen before"), state change; no savepoint; the empty reply is
    not stored, as a re-delivery renders it again. 13 statements before the webhook path
    was folded, 8 before the event row lost its savepoint."""
    call = dialled(make_call)
    (ringing,) = twilio.ringing(call)

    with CaptureQueriesContext(connection) as context:
        response = twilio.post(ServedClient(), ringing, HTTP_HOST=PUBLIC_HOST)

    assert response.status_code == 200
    assert Call.objects.get(pk=call.pk).state == "ringing"
    assert len(context.captured_queries) == 6, statements(context)
    sql = [q["sql"] for q in context.captured_queries]
    assert sql[0].startswith("BEGIN") and sql[-1] == "COMMIT"
    assert not any(s.startswith("SAVEPOINT") for s in sql)


def test_a_replayed_status_callback_is_one_transaction_of_four_statements(
    twilio: TwilioDriver, make_call: Any
) -> None:
    call = dialled(make_call)
    (ringing,) = twilio.ringing(call)
    client = ServedClient()
    first = twilio.post(client, ringing, HTTP_HOST=PUBLIC_HOST)

    with CaptureQueriesContext(connection) as context:
        again = twilio.post(client, ringing, HTTP_HOST=PUBLIC_HOST)

    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert CallEvent.objects.filter(call=call).count() == 1
    # BEGIN, the upsert that finds a live key, the stored-reply lookup, COMMIT.
    assert len(context.captured_queries) == 4, statements(context)


def test_a_reply_a_replay_cannot_render_again_is_stored(
    twilio: TwilioDriver, make_call: Any
) -> None:
    """A document fetch's TwiML is kept for its re-delivery; a status callback's empty
    reply is not (the replay renders it by itself)."""
    call = dialled(
        make_call, mode="conversation", metadata={"mode": "conversation", "initialMessage": "Hi."}
    )
    params = {
        "AccountSid": TWILIO_ACCOUNT,
        "CallSid": call.provider_call_id or "",
        "CallStatus": "in-progress",
        "Direction": "outbound-api",
        "From": call.from_number,
        "To": call.to_number,
    }
    fetch = twilio.signed("fetch:answer", f"{PUBLIC_URL}?callId={call.call_id}", params)
    (status,) = twilio.answered(call)
    client = ServedClient()

    document = twilio.post(client, fetch, HTTP_HOST=PUBLIC_HOST)
    twilio.post(client, status, HTTP_HOST=PUBLIC_HOST)

    assert b"<Say" in document.content
    stored = sorted(ReplayKey.objects.values_list("reply_status", flat=True), key=str)
    assert stored == [200, None]
    assert twilio.post(client, fetch, HTTP_HOST=PUBLIC_HOST).content == document.content


# --- the worker threads -------------------------------------------------------------------------


def test_the_served_application_hands_admitted_webhooks_to_the_endpoint(settings: Any) -> None:
    # Imported here: building the ASGI application runs the startup preflight.
    from voicecall_project.asgi import application

    router = application.application_mapping["http"]
    assert isinstance(router, ApiRouter) and isinstance(router.api, ApiEndpoint)
    gate = router.app
    assert isinstance(gate, WebhookGate) and isinstance(gate.handler, WebhookEndpoint)
    assert gate.handler.workers.size == settings.VOICECALL_WEBHOOK_WORKERS > 0
    # The API has a pool of its own: a waiting `continue` must not hold up webhooks.
    assert router.api.workers.size == settings.VOICECALL_API_WORKERS > 0
    assert router.api.workers is not gate.handler.workers


@pytest.fixture
def workers() -> Iterator[DatabaseWorkers]:
    pool = DatabaseWorkers(1)
    yield pool
    # The worker's connection must not outlive the test (PostgreSQL drops the test database).
    async_to_sync(pool.run)(connections.close_all)


def test_callbacks_run_on_one_reused_thread_that_keeps_or_returns_its_connection(
    twilio: TwilioDriver, make_call: Any, workers: DatabaseWorkers, monkeypatch: Any
) -> None:
    call = dialled(make_call)
    threads: list[str] = []
    opened: list[str] = []
    process = webhook_views.webhook_process

    def recorded(request: Any) -> Any:
        threads.append(threading.current_thread().name)
        return process(request)

    def on_connect(**kwargs: Any) -> None:
        opened.append(threading.current_thread().name)

    monkeypatch.setattr(webhook_views, "webhook_process", recorded)
    client = ServedClient(workers)
    connection_created.connect(on_connect)
    try:
        for delivery in [*twilio.ringing(call), *twilio.answered(call), *twilio.hangup(call)]:
            assert twilio.post(client, delivery, HTTP_HOST=PUBLIC_HOST).status_code == 200
    finally:
        connection_created.disconnect(on_connect)

    assert Call.objects.get(pk=call.pk).state == "completed"
    assert len(threads) == 3 and len(set(threads)) == 1, threads
    assert (
        threads[0].startswith("voicecall-webhook")
        and threading.current_thread().name not in threads
    )
    held = async_to_sync(workers.run)(lambda: connection.connection)
    if connection.settings_dict["OPTIONS"].get("pool"):
        assert held is None  # PostgreSQL: given back to the pool after each job
    else:
        assert held is not None and opened == threads[:1]  # SQLite: one connect, kept


def test_a_worker_drops_a_connection_that_stopped_working(monkeypatch: Any) -> None:
    connection.ensure_connection()
    connection.errors_occurred = True
    monkeypatch.setattr(connections["default"], "is_usable", lambda: False)

    connections_checked()

    assert connection.connection is None


def test_a_worker_keeps_a_working_connection_and_forgets_a_passing_error() -> None:
    connection.ensure_connection()
    kept = connection.connection
    connection.errors_occurred = True

    connections_checked()

    assert connection.connection is kept and not connection.errors_occurred


def test_a_worker_drops_a_connection_left_outside_autocommit() -> None:
    connection.ensure_connection()
    connection.set_autocommit(False)

    connections_checked()

    assert connection.connection is None
    assert connection.get_autocommit()


# --- the endpoint's own edges -------------------------------------------------------------------


def test_a_host_outside_allowed_hosts_is_400_and_changes_nothing(
    twilio: TwilioDriver, make_call: Any, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["voice.example.org"]
    call = dialled(make_call)
    (ringing,) = twilio.ringing(call)

    response = twilio.post(ServedClient(), ringing, HTTP_HOST=PUBLIC_HOST)

    assert response.status_code == 400
    assert Call.objects.get(pk=call.pk).state == "initiated"
    assert not ReplayKey.objects.exists()


def test_the_reply_carries_the_headers_the_middleware_would_add(
    twilio: TwilioDriver, make_call: Any
) -> None:
    call = dialled(make_call)
    (ringing,) = twilio.ringing(call)

    response = twilio.post(ServedClient(), ringing, HTTP_HOST=PUBLIC_HOST)

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert int(response["Content-Length"]) == len(response.content)
    assert response["Content-Type"] == "application/xml"


def test_a_failure_that_is_not_the_carriers_is_the_500_django_would_give(
    twilio: TwilioDriver, make_call: Any, monkeypatch: Any
) -> None:
    call = dialled(make_call)
    (ringing,) = twilio.ringing(call)

    def broken(request: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(webhook_views, "webhook_process", broken)
    response = twilio.post(ServedClient(), ringing, HTTP_HOST=PUBLIC_HOST)

    assert response.status_code == 500
    assert Call.objects.get(pk=call.pk).state == "initiated"
