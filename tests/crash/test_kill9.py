"""kill -9 at chosen points of webhook handling, restart, redelivery: applied exactly once.

A real `voicecall serve` (twilio carrier, REST on a loopback fake) is started with
VOICECALL_CRASH_AT naming a point of calls/faults.py; a signed Twilio webhook makes it
SIGKILL itself there. Restarted without the variable, it gets the identical delivery again
(as Twilio retries) and must apply the event once, reply as the first time would have,
and send every carrier command the event owes exactly once (the outbox and its sweep).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.crash.harness import (
    ACCOUNT_SID,
    CALLEE,
    OUR_NUMBER,
    PUBLIC_URL,
    FakeTwilioApi,
    PostgresDatabase,
    Server,
    is_postgres,
    wait_for,
)

pytestmark = [pytest.mark.e2e]

GREETING = "Hello from the crash test"

SEED = """
from calls.models import Call
from django.db import connection
from django.utils import timezone
fields = {fields!r}
if fields.pop("answered"):
    fields["answered_at"] = timezone.now()
Call.objects.create(**fields)
emit(connection.vendor)
"""

# One snapshot of the call: reads outside a transaction could pair a command already done
# with metadata read before the same send removed its greeting, a state that never was.
# SQLite's IMMEDIATE transaction keeps writers out meanwhile; PostgreSQL needs REPEATABLE READ
# for one snapshot across statements.
INSPECT = """
from django.db import connection, transaction
from calls.models import Call, CallEvent, CarrierCommand, ReplayKey, TranscriptEntry
with transaction.atomic():
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    call = Call.objects.get(public_id={call_id!r})
    state = {{
        "state": call.state,
        "metadata": call.metadata,
        "events": list(CallEvent.objects.filter(call=call).values_list("type", flat=True)),
        "transcript": list(TranscriptEntry.objects.filter(call=call)
                           .values_list("speaker", "text")),
        "replay_keys": ReplayKey.objects.count(),
        "replies": [bytes(r or b"").decode() for r in
                    ReplayKey.objects.values_list("reply_body", flat=True)],
        "commands": list(CarrierCommand.objects.filter(call=call).values(
            "kind", "attempts", "done_at", "failed_at", "lease_until", "last_error")),
    }}
emit(state)
"""


@pytest.fixture
def api() -> Iterator[FakeTwilioApi]:
    fake = FakeTwilioApi()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def server(tmp_path: Path, api: FakeTwilioApi) -> Iterator[Server]:
    """The server on SQLite in tmp_path, or on a fresh PostgreSQL database when the test
    process was given one (CI's second run)."""
    database = (
        PostgresDatabase(os.environ["DATABASE_URL"])
        if is_postgres(os.environ.get("DATABASE_URL"))
        else None
    )
    srv = Server(tmp_path, api_origin=api.origin, database_url=database.url if database else None)
    try:
        yield srv
    finally:
        srv.stop()
        if database is not None:
            database.drop()


def _seed(
    server: Server, *, state: str, metadata: dict[str, Any] | None = None, answered: bool
) -> tuple[str, str]:
    """An outbound conversation Twilio call; (callId, CallSid)."""
    call_id, call_sid = str(uuid.uuid4()), "CA" + uuid.uuid4().hex
    vendor = server.query(
        SEED.format(
            fields={
                "public_id": call_id,
                "provider": "twilio",
                "provider_call_id": call_sid,
                "direction": "outbound",
                "mode": "conversation",
                "state": state,
                "from_number": OUR_NUMBER,
                "to_number": CALLEE,
                "webhook_url": f"{PUBLIC_URL}?callId={call_id}",
                "metadata": metadata or {},
                "answered": answered,
            }
        )
    )
    # The server runs on the database kind this test run was given.
    assert vendor == ("postgresql" if is_postgres(os.environ.get("DATABASE_URL")) else "sqlite")
    return call_id, call_sid


def _inspect(server: Server, call_id: str) -> dict[str, Any]:
    return server.query(INSPECT.format(call_id=call_id))


def _crash_on(server: Server, point: str, query: dict[str, str], form: dict[str, str]) -> None:
    """Deliver with the server set to die at `point`: no answer, and it died by SIGKILL."""
    server.start(crash_at=point)
    with pytest.raises(httpx.HTTPError):
        server.deliver(query, form)
    assert server.wait_exit() == -signal.SIGKILL, server.log_text()


def _report_said(server: Server, twiml: str, call_sid: str) -> None:
    """Twilio reaching the <Redirect> after our <Say>: the words were said."""
    [url] = [el.text or "" for el in ET.fromstring(twiml).iter("Redirect")]
    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert query["flow"] == "spoken"
    response = server.deliver(query, _form(call_sid, CallStatus="in-progress"))
    assert response.status_code == 200, response.text


def _in_flight(state: dict[str, Any]) -> list[str]:
    return [entry["text"] for entry in state["metadata"].get("utterancesInFlight", [])]


def _form(call_sid: str, **fields: str) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "Direction": "outbound-api",
        "From": OUR_NUMBER,
        "To": CALLEE,
        **fields,
    }


@pytest.mark.parametrize("point", ["webhook.recorded", "event.applied", "webhook.applied"])
def test_a_crash_before_commit_leaves_nothing_and_the_redelivery_applies_once(
    server: Server, api: FakeTwilioApi, point: str
) -> None:
    call_id, call_sid = _seed(server, state="listening", answered=True)
    # The Gather action the adapter hands Twilio (no open turn: no turnToken).
    query = {"callId": call_id, "flow": "gather"}
    form = _form(call_sid, CallStatus="in-progress", SpeechResult="yes please", Confidence="0.9")

    _crash_on(server, point, query, form)
    after_crash = _inspect(server, call_id)
    assert after_crash["events"] == []
    assert after_crash["transcript"] == []
    assert after_crash["replay_keys"] == 0
    assert after_crash["commands"] == []
    assert after_crash["state"] == "listening"

    server.start()
    first = server.deliver(query, form)
    assert first.status_code == 200, (first.text, server.log_text())
    applied = _inspect(server, call_id)
    assert applied["events"] == ["call.speech"]
    assert applied["transcript"] == [["user", "yes please"]]
    assert applied["replay_keys"] == 1
    assert applied["replies"] == [first.text]

    again = server.deliver(query, form)
    assert again.status_code == 200, again.text
    assert again.text == first.text  # the kept reply, not an empty document
    replayed = _inspect(server, call_id)
    assert replayed["events"] == ["call.speech"]
    assert replayed["transcript"] == [["user", "yes please"]]
    assert replayed["replay_keys"] == 1
    assert replayed["state"] == "listening"
    # Caller speech owes the carrier nothing here (no responder is configured).
    assert api.updates(call_sid) == []


def test_a_crash_after_commit_still_sends_the_owed_greeting_exactly_once(
    server: Server, api: FakeTwilioApi
) -> None:
    call_id, call_sid = _seed(
        server,
        state="ringing",
        answered=False,
        metadata={"initialMessage": GREETING, "mode": "conversation"},
    )
    query = {"callId": call_id, "type": "status"}  # the StatusCallback given at dial time
    form = _form(
        call_sid,
        CallStatus="in-progress",
        CallbackSource="call-progress-events",
        SequenceNumber="2",
    )

    _crash_on(server, "outbox.committed", query, form)
    committed = _inspect(server, call_id)
    assert committed["events"] == ["call.answered"]
    assert committed["replay_keys"] == 1
    [greeting] = committed["commands"]
    assert greeting["kind"] == "greeting"
    assert greeting["done_at"] is None and greeting["failed_at"] is None
    assert greeting["attempts"] == 0
    assert committed["transcript"] == []
    assert api.updates(call_sid) == []  # died before telling the carrier

    server.start()  # the sweep (every 0.2 s) finds the owed command and sends it
    wait_for(lambda: api.updates(call_sid), timeout=10, what="the greeting update")

    def sent() -> dict[str, Any] | None:
        state = _inspect(server, call_id)
        return state if state["commands"][0]["done_at"] else None

    done = wait_for(sent, timeout=10, what="the greeting command done", interval=0.2)
    [update] = api.updates(call_sid)
    [twiml] = update.form["Twiml"]
    assert GREETING in twiml and "<Say" in twiml
    assert done["commands"][0]["attempts"] == 1
    # Handed to Twilio once; written when Twilio reports it said.
    assert done["transcript"] == [] and _in_flight(done) == [GREETING]
    assert "initialMessage" not in done["metadata"]
    assert done["state"] == "listening"
    _report_said(server, twiml, call_sid)

    again = server.deliver(query, form)
    assert again.status_code == 200, again.text
    time.sleep(1.0)  # five sweeps: time enough for a second send, if one were owed
    replayed = _inspect(server, call_id)
    assert len(api.updates(call_sid)) == 1
    assert replayed["events"] == ["call.answered", "call.spoken"]
    assert replayed["transcript"] == [["bot", GREETING]]
    assert replayed["replay_keys"] == 2  # the answer and Twilio's report of the words said
    assert [c["kind"] for c in replayed["commands"]] == ["greeting"]


def test_a_crash_before_commit_owes_nothing_and_the_redelivery_greets_once(
    server: Server, api: FakeTwilioApi
) -> None:
    """The greeting command row is written inside the transaction: rolled back with it, and
    owed (and sent, once) only when the redelivery commits."""
    call_id, call_sid = _seed(
        server,
        state="ringing",
        answered=False,
        metadata={"initialMessage": GREETING, "mode": "conversation"},
    )
    query = {"callId": call_id, "type": "status"}
    form = _form(call_sid, CallStatus="in-progress", SequenceNumber="2")

    _crash_on(server, "webhook.applied", query, form)
    rolled_back = _inspect(server, call_id)
    assert rolled_back["events"] == [] and rolled_back["commands"] == []
    assert rolled_back["replay_keys"] == 0
    assert rolled_back["state"] == "ringing"
    assert rolled_back["metadata"]["initialMessage"] == GREETING

    server.start()
    first = server.deliver(query, form)
    assert first.status_code == 200, (first.text, server.log_text())
    # Sent by the delivering process right after its commit; the sweep must not send it again.
    wait_for(lambda: api.updates(call_sid), timeout=5, what="the greeting update")
    _report_said(server, api.updates(call_sid)[0].form["Twiml"][0], call_sid)
    again = server.deliver(query, form)
    assert again.status_code == 200, again.text
    time.sleep(1.0)
    greeted = _inspect(server, call_id)
    assert len(api.updates(call_sid)) == 1
    assert greeted["events"] == ["call.answered", "call.spoken"]
    assert greeted["transcript"] == [["bot", GREETING]]
    [command] = greeted["commands"]
    assert command["kind"] == "greeting" and command["done_at"] and command["attempts"] == 1
