"""Hypothesis fuzzing of the `mock` carrier's webhook (docs/carriers.md, "Mock carrier").

The mock carrier signs nothing: with it configured, anyone who can reach the webhook can
post events, so its parser is the whole defence. Three properties, through the Django test
client with the mock carrier installed (no simulation):

1. A look-alike path is 404, another method 405 and a body over 64 KiB 413, and none of
   them changes anything.
2. A malformed body (controls and `\\ud800` escapes, huge values, wrong JSON types for any
   field, NaN and numbers beyond float range, timestamps at the edges of time, numbers
   hundreds of digits long, non-JSON, invalid UTF-8, unknown or finished calls) never gets
   a 5xx; a 4xx leaves every table as it was; a finished call never changes; no stored
   text holds a control character or a lone surrogate, and none is longer than its column.
3. Random sequences of well-formed events for one call, some re-sent byte for byte: always
   200, the state only moves forward, a re-sent body adds no event or transcript line, and
   the caller's words become one transcript line while the call is live.

Section 4 pins the defects this fuzzing found as plain tests, so that each one fails on every
run, whatever the seed, until it is fixed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client
from hypothesis import event, given
from hypothesis import strategies as st

from calls.models import Call, TranscriptEntry
from providers.base import AnsweredBy, EventType
from providers.mock import MockProvider
from tests.fakes.carriers.base import FRIEND, STRANGER, Delivery
from tests.fuzz.conftest import (
    BODY_LIMIT,
    CONTROL_CHARS,
    EDGE_ISO_TIMES,
    EDGE_NUMBERS,
    END_STATES,
    FUZZ,
    LIVE_STATES,
    LONG_NUMBER,
    SURROGATES,
    Snapshot,
    assert_moved_forward,
    describe,
    finished_call,
    huge_text,
    isolated,
    nasty_text,
    send,
    stored_text_problems,
    terminal_facts,
)

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:3334/voice/webhook"
TYPES = [t.value for t in EventType]
ANSWERED_BY = [a.value for a in AnsweredBy]
REASONS = sorted(END_STATES) + ["exploded", ""]


def post_json(body: bytes, url: str = URL, content_type: str = "application/json") -> Delivery:
    return Delivery(label="fuzz", url=url, body=body, content_type=content_type, headers={})


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()  # ensure_ascii: lone surrogates become \\ud800


def _odd_json() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.sampled_from(EDGE_NUMBERS),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )


def plausible_item(data: st.DataObject, call: Call, done: Call) -> dict[str, Any]:
    """An event the mock carrier could send about the call, the finished one or a new one."""
    whose = data.draw(st.sampled_from(["call", "call", "done", "new"]), label="whose")
    target = {"call": call, "done": done}.get(whose)
    item: dict[str, Any] = {
        "type": data.draw(st.sampled_from(TYPES), label="type"),
        "callId": data.draw(
            st.sampled_from([target.call_id, target.provider_call_id])
            if target
            else st.just(f"mock-{uuid.uuid4()}"),
            label="callId",
        ),
        "id": str(uuid.uuid4()),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "providerCallId": st.just(target.provider_call_id if target else None),
        "turnToken": st.sampled_from([call.turn_token, uuid.uuid4().hex]),
        "direction": st.sampled_from(["inbound", "outbound"]),
        "from": st.sampled_from([FRIEND, STRANGER, LONG_NUMBER]),
        "to": st.sampled_from(["+15550000000", LONG_NUMBER]),
        "transcript": st.text(max_size=30),
        "isFinal": st.booleans(),
        "confidence": st.floats(0, 1),
        "text": st.text(max_size=20),
        "digits": st.from_regex(r"[0-9*#]{1,4}", fullmatch=True),
        "reason": st.sampled_from(REASONS),
        "timestamp": st.sampled_from(["2024-01-01T00:00:00Z", 1700000000000, *EDGE_ISO_TIMES]),
        "dedupeKey": st.just(str(uuid.uuid4())),
    }
    for name in data.draw(
        st.lists(st.sampled_from(sorted(optional)), unique=True), label="optional fields"
    ):
        item[name] = data.draw(optional[name], label=name)
    return item


def mutate(item: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Hostile changes: a control or surrogate slipped into a value, a value replaced by
    hostile text or another JSON type, or a key deleted."""
    for _ in range(data.draw(st.integers(0, 3), label="mutations")):
        key = data.draw(st.sampled_from(sorted(item)), label="key")
        how = data.draw(st.sampled_from(["poison", "replace", "retype", "delete"]), label="how")
        if how == "delete":
            del item[key]
            if not item:
                break
        elif how == "poison" and isinstance(item[key], str):
            value = item[key]
            at = data.draw(st.integers(0, len(value)), label="at")
            bad = data.draw(st.sampled_from(CONTROL_CHARS + SURROGATES), label="bad char")
            item[key] = value[:at] + bad + value[at:]
        elif how == "retype":
            item[key] = data.draw(_odd_json(), label=key)
        else:
            item[key] = data.draw(st.one_of(nasty_text(surrogates=True), huge_text()), label=key)
    return item


def malformed_body(data: st.DataObject, call: Call, done: Call) -> bytes:
    shape = data.draw(st.sampled_from(["event"] * 5 + ["events", "json", "raw"]), label="shape")
    if shape == "raw":
        return data.draw(
            st.one_of(
                st.binary(max_size=200),
                st.sampled_from(
                    [
                        b"",
                        b"null",
                        b"not json",
                        b"\xff\xfe",
                        b"[" * 50000,
                        b'{"event": ',
                        b'{"event": {"type": "call.speech", "callId": "'
                        + call.call_id.encode()
                        + b'", "transcript": "a \xed\xa0\x80 b"}}',
                    ]
                ),
            ),
            label="raw body",
        )
    if shape == "json":
        return encode(
            data.draw(
                st.recursive(
                    _odd_json() | nasty_text(surrogates=True),
                    lambda inner: (
                        st.lists(inner, max_size=3)
                        | st.dictionaries(
                            st.sampled_from(["event", "events", "type", "callId"])
                            | st.text(max_size=4),
                            inner,
                            max_size=3,
                        )
                    ),
                    max_leaves=10,
                ),
                label="json",
            )
        )
    if shape == "events":
        items = [
            mutate(plausible_item(data, call, done), data)
            for _ in range(data.draw(st.integers(0, 3), label="how many"))
        ]
        return encode(
            {"events": data.draw(st.sampled_from([items, items, {"x": 1}, "x"]), label="events")}
        )
    return encode({"event": mutate(plausible_item(data, call, done), data)})


@FUZZ
@given(data=st.data())
def test_structurally_bad_requests_are_refused_and_change_nothing(
    mock_carrier: MockProvider, make_call: Any, data: st.DataObject
) -> None:
    """Protects the gates that are the mock carrier's only outer defence: a look-alike
    path (404), another method (405) or a body over 64 KiB (413) does nothing."""
    with isolated():
        client = Client()
        call = make_call(state="initiated")
        body = encode(
            {"event": {"type": "call.answered", "callId": call.call_id, "id": str(uuid.uuid4())}}
        )
        how = data.draw(st.sampled_from(["path", "method", "oversized"]), label="how")
        method, expected, delivery = "POST", 404, post_json(body)
        if how == "path":
            segment = data.draw(
                st.from_regex(r"[a-z0-9_.~]{1,12}", fullmatch=True).filter(
                    lambda s: s != "webhook"
                ),
                label="segment",
            )
            path = data.draw(
                st.sampled_from(
                    [f"/voice/{segment}", f"/voice/webhook/{segment}", f"/voice/webhook{segment}"]
                ),
                label="path",
            )
            delivery = post_json(body, url=f"http://127.0.0.1:3334{path}")
        elif how == "method":
            method = data.draw(
                st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]), label="method"
            )
            expected = 405
        else:
            size = data.draw(st.integers(BODY_LIMIT + 1, 3 * BODY_LIMIT), label="size")
            padded = {"event": {"type": "call.answered", "callId": call.call_id, "pad": ""}}
            padded["event"]["pad"] = "x" * (size - len(encode(padded)))
            delivery, expected = post_json(encode(padded)), 413
            assert len(delivery.body) == size
        before = Snapshot.take(call)

        response = send(client, delivery, method=method)
        event(f"{how} -> {response.status_code}")

        assert response.status_code == expected, describe(response)
        assert (changes := before.diff(Snapshot.take(call))) == [], changes


@FUZZ
@given(data=st.data())
def test_malformed_requests_never_5xx_and_4xx_changes_nothing(
    mock_carrier: MockProvider, make_call: Any, data: st.DataObject
) -> None:
    """Protects the mock parser and the services from hostile input: no 500s, no
    half-applied 4xx, no change to a finished call, no control character in storage."""
    with isolated():
        client = Client()
        call = make_call(
            state=data.draw(st.sampled_from(LIVE_STATES), label="state"),
            turn_token=uuid.uuid4().hex,
        )
        done = finished_call(
            make_call,
            provider="mock",
            provider_call_id=f"mock-{uuid.uuid4()}",
            state=data.draw(st.sampled_from(END_STATES), label="end state"),
        )
        content_type = data.draw(
            st.sampled_from(["application/json", "application/json", "text/plain", ""]),
            label="content type",
        )
        delivery = post_json(malformed_body(data, call, done), content_type=content_type)
        before = Snapshot.take(call, done)
        finished = terminal_facts(done)

        response = send(client, delivery)

        event(f"status {response.status_code} {bytes(response.content[:40])!r}")
        assert response.status_code < 500, describe(response)
        if len(delivery.body) > BODY_LIMIT:
            assert response.status_code == 413, describe(response)
        after = Snapshot.take(call, done)
        if 400 <= response.status_code < 500:
            assert (changes := before.diff(after)) == [], (describe(response), changes)
        assert terminal_facts(done) == finished
        assert_moved_forward(before.rows[call.pk]["state"], after.rows[call.pk]["state"])
        assert (problems := stored_text_problems()) == [], problems


WORDS = st.from_regex(r"[A-Za-z]{1,10}( [A-Za-z]{1,10}){0,3}", fullmatch=True)


def user_lines(call: Call) -> int:
    return TranscriptEntry.objects.filter(call=call, speaker="user").count()


@FUZZ
@given(data=st.data())
def test_sequences_of_events_only_move_forward(
    mock_carrier: MockProvider, make_call: Any, data: st.DataObject
) -> None:
    """Protects the state machine and replay detection: events in any order for one call,
    some re-sent byte for byte; and the caller's words are kept once while the call is live."""
    with isolated():
        client = Client()
        token = uuid.uuid4().hex
        call = make_call(state="initiated", turn_token=token)
        sent: list[Delivery] = []
        for index in range(data.draw(st.integers(1, 12), label="steps")):
            resend, heard = bool(sent) and data.draw(st.booleans(), label="resend"), False
            if resend:
                delivery = data.draw(st.sampled_from(sent), label="again")
            else:
                clean = data.draw(st.booleans(), label="clean words")
                item = {
                    "type": data.draw(st.sampled_from(TYPES), label="type"),
                    "callId": call.call_id,
                    "id": str(uuid.uuid4()),
                    "turnToken": data.draw(st.sampled_from([token, None, "other"])),
                    "transcript": data.draw(
                        WORDS if clean else nasty_text(surrogates=True), label="words"
                    ),
                    "confidence": data.draw(st.sampled_from([0.8, 1, 0, None]), label="conf"),
                    "reason": data.draw(st.sampled_from(REASONS), label="reason"),
                    "digits": "1",
                    "answeredBy": data.draw(st.sampled_from(ANSWERED_BY), label="answered by"),
                }
                heard = clean and item["type"] == "call.speech" and item["turnToken"] != "other"
                delivery = post_json(encode({"event": item}))
                sent.append(delivery)
            before, lines = Snapshot.take(call), user_lines(call)

            response = send(client, delivery)

            after = Snapshot.take(call)
            step = f"step {index} resend={resend} {delivery.body[:160]!r}"
            assert response.status_code == 200, (step, describe(response))
            assert_moved_forward(before.rows[call.pk]["state"], after.rows[call.pk]["state"], step)
            if before.rows[call.pk]["state"] in END_STATES:
                assert (
                    after.rows[call.pk]["transcript_lines"]
                    == before.rows[call.pk]["transcript_lines"]
                ), step
            elif heard:
                assert user_lines(call) == lines + 1, ("words lost", step)
            if resend:
                assert after.counts.events == before.counts.events, step
                assert after.counts.transcript == before.counts.transcript, step
                assert after.rows[call.pk]["state"] == before.rows[call.pk]["state"], step
            assert (problems := stored_text_problems()) == [], (step, problems)


# == 4. pinned examples of defects this fuzzing found ===========================================
# Plain tests, so that each one fails on every run until it is fixed, whatever the seed.


@pytest.mark.parametrize("confidence", ["NaN", "Infinity", "-Infinity", "1" + "0" * 400])
def test_speech_with_an_unusable_confidence_is_not_lost_or_a_server_error(
    mock_carrier: MockProvider, make_call: Any, confidence: str
) -> None:
    """providers/mock.py took any JSON number as the confidence: NaN and the infinities
    (Python's json reads them) made the CallEvent payload fail SQLite's JSON check, which
    the event insert takes for a duplicate (the words were silently dropped), and
    PostgreSQL's JSONB (500); `math.isfinite` of an integer beyond float range raises
    OverflowError (500). Refusing the event (400) or dropping the confidence both do."""
    call = make_call(state="listening")
    item = {"type": "call.speech", "callId": call.call_id, "id": "e1", "transcript": "yes please"}
    # Spliced in as text, the way any client could send it.
    body = encode({"event": {**item, "confidence": 0.5}}).replace(
        b'"confidence": 0.5', b'"confidence": ' + confidence.encode()
    )

    response = send(Client(), post_json(body))

    assert response.status_code in (200, 400), describe(response)
    lines = list(TranscriptEntry.objects.values_list("text", flat=True))
    assert lines == (["yes please"] if response.status_code == 200 else []), describe(response)


@pytest.mark.parametrize("stamp", EDGE_ISO_TIMES)
@pytest.mark.parametrize(
    ("event_type", "state"), [("call.answered", "answered"), ("call.ended", "completed")]
)
def test_an_event_stamped_at_the_edge_of_time_is_not_a_server_error(
    mock_carrier: MockProvider, make_call: Any, stamp: str, event_type: str, state: str
) -> None:
    """The event timestamp becomes answered_at/ended_at as given: year 9999 overflows
    `answered_at + maxDurationSeconds` (calls/services/lifecycle.py `call_mark_answered`),
    year 1 with a positive offset is before datetime.min in UTC, and PostgreSQL refuses UTC
    offsets beyond ±15:59. Refusing the event (400) or ignoring its clock both do."""
    call = make_call(state="initiated")
    item = {"type": event_type, "callId": call.call_id, "id": "e1", "timestamp": stamp}

    response = send(Client(), post_json(encode({"event": item})))

    assert response.status_code in (200, 400), describe(response)
    call.refresh_from_db()
    assert call.state == (state if response.status_code == 200 else "initiated")
