"""Hypothesis fuzzing of the Telnyx webhook (Call Control v2), through the Django test client.

Telnyx signs `"{telnyx-timestamp}|{raw body}"` with Ed25519 and we accept a timestamp within
300 s of now. Three properties, each against the real Telnyx adapter on the fake REST API:

1. A forged request (signature or timestamp header missing or blank, a random, bit-flipped,
   truncated or over-long signature, one made with another key, over another body or
   another timestamp, a correctly signed but stale, future or non-numeric timestamp) is
   answered 401 and changes nothing; the genuine request is then accepted. A look-alike
   path is 404, another method 405 and a body over 64 KiB 413, also when validly signed.
2. A validly signed but malformed body (controls and `\\ud800` escapes anywhere, huge or
   empty values, wrong JSON types, NaN and numbers beyond float range, `occurred_at` at the
   edges of time, non-JSON and invalid UTF-8, unknown or finished calls, caller numbers
   hundreds of digits long) never gets a 5xx; a 4xx leaves every table as it was; a
   finished call never changes; no stored text holds a control character or a lone
   surrogate, and none is longer than its column.
3. Random sequences of genuine events for one call, re-sent verbatim or redelivered the way
   Telnyx does (same event id, next attempt, new signature): always 200, the state only
   moves forward, neither kind of re-delivery adds an event row or a transcript line, and
   the caller's final words become one transcript line while the call is live, whatever
   confidence comes with them.

Section 4 pins the defects this fuzzing found as plain tests, so that each one fails on every
run, whatever the seed, until it is fixed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from hypothesis import assume, event, given
from hypothesis import strategies as st

from calls.models import Call, TranscriptEntry
from providers.telnyx import clientstate
from providers.telnyx.webhooks import END_REASONS, SDK_END_REASONS
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import (
    CALLEE,
    FRIEND,
    GREETING,
    OUR_NUMBER,
    PUBLIC_URL,
    STRANGER,
    Delivery,
)
from tests.fakes.carriers.telnyx import TELNYX_CONNECTION, TelnyxDriver
from tests.fakes.signing import telnyx_headers
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
    Counts,
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

SIGNATURE = "telnyx-signature-ed25519"
TIMESTAMP = "telnyx-timestamp"
#: Beyond the 300 s window with room for a slow example.
OUTSIDE_WINDOW = 300 + 30
EVENT_TYPES = [
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.bridged",
    "call.speak.started",
    "call.speak.ended",
    "call.transcription",
    "call.dtmf.received",
    "call.hangup",
    "call.machine.detection.ended",
    "call.playback.started",
    "streaming.started",
]
CAUSES = sorted(END_REASONS) + sorted(SDK_END_REASONS) + ["exploded", ""]


@pytest.fixture
def telnyx(configure: Any) -> TelnyxDriver:
    driver = Carrier(TelnyxDriver(), configure).start()
    assert isinstance(driver, TelnyxDriver)
    return driver


def new_control_id() -> str:
    return f"v3:{uuid.uuid4().hex}"


def outbound(make_call: Any, *, state: str = "initiated", **fields: Any) -> Call:
    """An outbound Telnyx call we dialled."""
    call: Call = make_call(
        provider="telnyx",
        provider_call_id=new_control_id(),
        state=state,
        from_number=OUR_NUMBER,
        to_number=CALLEE,
        **fields,
    )
    return call


def sign(
    driver: TelnyxDriver,
    body: bytes,
    *,
    timestamp: str | None = None,
    key: Ed25519PrivateKey | None = None,
    url: str = PUBLIC_URL,
    content_type: str = "application/json",
) -> Delivery:
    """A request signed as Telnyx signs: Ed25519 over `timestamp|body`, timestamp now."""
    return Delivery(
        label="fuzz",
        url=url,
        body=body,
        content_type=content_type,
        headers=telnyx_headers(key or driver.key, body, timestamp),
    )


def envelope(
    event_type: Any,
    payload: Any,
    *,
    event_id: Any = None,
    attempt: int = 1,
    occurred_at: Any = "2024-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": event_id if event_id is not None else str(uuid.uuid4()),
            "occurred_at": occurred_at,
            "payload": payload,
        },
        "meta": {"attempt": attempt, "delivered_to": PUBLIC_URL},
    }


def payload_for(call: Call, client_state: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "call_control_id": call.provider_call_id,
        "connection_id": TELNYX_CONNECTION,
        "call_leg_id": str(uuid.uuid4()),
        "call_session_id": str(uuid.uuid4()),
        "client_state": client_state
        if client_state is not None
        else clientstate.encode(call.call_id),
        "from": call.from_number,
        "to": call.to_number,
        **fields,
    }


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()  # ensure_ascii: lone surrogates become \\ud800


# == 1. forged and structurally bad requests ====================================================


def genuine_situation(
    data: st.DataObject, driver: TelnyxDriver, make_call: Any
) -> tuple[Delivery, list[Call]]:
    """A genuine, freshly signed event that changes something when accepted."""
    kind = data.draw(
        st.sampled_from(["answered", "ringing", "hangup", "speech", "inbound"]), label="kind"
    )
    if kind in ("answered", "ringing"):
        call = outbound(make_call)
        return sign(driver, encode(envelope(f"call.{kind}", payload_for(call)))), [call]
    if kind == "hangup":
        call = outbound(make_call, state=data.draw(st.sampled_from(LIVE_STATES)))
        cause = data.draw(st.sampled_from(sorted(END_REASONS)), label="cause")
        return sign(
            driver,
            encode(envelope("call.hangup", payload_for(call, hangup_cause=cause, state="hangup"))),
        ), [call]
    if kind == "speech":
        token = uuid.uuid4().hex
        call = outbound(make_call, state="listening", turn_token=token)
        words = data.draw(st.text(min_size=1, max_size=40).filter(str.strip), label="words")
        payload = payload_for(
            call,
            clientstate.encode(call.call_id, token),
            transcription_data={
                "transcript": words,
                "is_final": True,
                "confidence": 0.9,
                "transcription_track": "inbound",
            },
        )
        return sign(driver, encode(envelope("call.transcription", payload))), [call]
    caller = data.draw(st.sampled_from([FRIEND, STRANGER]), label="caller")
    payload = {
        "call_control_id": new_control_id(),
        "connection_id": TELNYX_CONNECTION,
        "client_state": None,
        "direction": "incoming",
        "from": caller,
        "to": OUR_NUMBER,
        "state": "parked",
    }
    return sign(driver, encode(envelope("call.initiated", payload))), []


def _b64(raw: bytes, data: st.DataObject) -> str:
    """Standard or URL-safe Base64, padded or not: every spelling Telnyx may use."""
    urlsafe = data.draw(st.booleans(), label="urlsafe")
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text.rstrip("=") if data.draw(st.booleans(), label="unpadded") else text


def forge(genuine: Delivery, driver: TelnyxDriver, data: st.DataObject) -> Delivery:
    """A forged copy of `genuine`: same body posted, headers that do not prove it."""
    stamp = genuine.headers[TIMESTAMP]
    raw = base64.b64decode(genuine.headers[SIGNATURE])
    now = int(time.time())
    body = genuine.body
    headers = dict(genuine.headers)
    how = data.draw(
        st.sampled_from(
            [
                "no-signature",
                "no-timestamp",
                "neither",
                "blank",
                "random",
                "bit-flip",
                "truncated",
                "too-long",
                "other-key",
                "other-body",
                "other-timestamp",
                "stale",
                "future",
                "odd-timestamp",
                "comma",
            ]
        ),
        label="how",
    )
    if how == "no-signature":
        del headers[SIGNATURE]
    elif how == "no-timestamp":
        del headers[TIMESTAMP]
    elif how == "neither":
        headers = {}
    elif how == "blank":
        name = data.draw(st.sampled_from([SIGNATURE, TIMESTAMP]), label="blank header")
        headers[name] = data.draw(st.sampled_from(["", " ", "\t"]), label="blank")
    elif how == "random":
        headers[SIGNATURE] = data.draw(
            st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=100
            ),
            label="random",
        )
    elif how == "bit-flip":
        bit = data.draw(st.integers(0, len(raw) * 8 - 1), label="bit")
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        headers[SIGNATURE] = _b64(bytes(flipped), data)
    elif how == "truncated":
        headers[SIGNATURE] = _b64(raw[: data.draw(st.integers(1, 63), label="kept")], data)
    elif how == "too-long":
        headers[SIGNATURE] = _b64(raw + data.draw(st.binary(min_size=1, max_size=8)), data)
    elif how == "other-key":
        headers = sign(driver, body, timestamp=stamp, key=Ed25519PrivateKey.generate()).headers
    elif how == "other-body":
        changed = data.draw(
            st.sampled_from(["append", "prepend", "byte", "reencode"]), label="body change"
        )
        if changed == "append":
            other = body + data.draw(st.sampled_from([b" ", b"\n", b"{}", b"\x00"]))
        elif changed == "prepend":
            other = b" " + body
        elif changed == "byte":
            index = data.draw(st.integers(0, len(body) - 1), label="byte")
            other = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        else:
            other = json.dumps(json.loads(body), indent=1).encode()
        assume(other != body)
        headers = sign(driver, other, timestamp=stamp).headers
    elif how == "other-timestamp":
        other_stamp = str(now + data.draw(st.integers(-200, 200).filter(bool), label="shift"))
        assume(other_stamp != stamp)
        headers[TIMESTAMP] = other_stamp
    elif how in ("stale", "future"):
        shift = data.draw(st.integers(OUTSIDE_WINDOW, 10**9), label="seconds")
        headers = sign(
            driver, body, timestamp=str(now - shift if how == "stale" else now + shift)
        ).headers
    elif how == "odd-timestamp":
        odd = data.draw(
            st.sampled_from(
                [
                    f"{now}.0",
                    f"{now}x",
                    f"-{now}",
                    f"+{now}",
                    "1" * 16,
                    f"{now:x}",
                    "١٧٠٠٠٠٠٠٠٠",
                    f"{now}e0",
                    "NaN",
                    "0x10",
                ]
            ),
            label="odd timestamp",
        )
        headers = sign(driver, body, timestamp=odd).headers
    else:
        garbage = base64.b64encode(bytes(64)).decode()
        real = genuine.headers[SIGNATURE]
        headers[SIGNATURE] = data.draw(
            st.sampled_from([f"{garbage},{real}", f"{real},x", f"{real} {real}"]), label="comma"
        )
    return Delivery(genuine.label, genuine.url, body, genuine.content_type, headers)


@FUZZ
@given(data=st.data())
def test_forged_requests_are_401_and_change_nothing(
    telnyx: TelnyxDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the Ed25519 check and its 300 s window: only a fresh signature by our
    Telnyx key over exactly this body can move a call, create one or leave a replay key."""
    with isolated():
        client = Client()
        genuine, calls = genuine_situation(data, telnyx, make_call)
        forged = forge(genuine, telnyx, data)
        before = Snapshot.take(*calls)

        response = send(client, forged)

        assert response.status_code == 401, describe(response)
        assert (changes := before.diff(Snapshot.take(*calls))) == [], changes
        # The control: the genuine request is accepted and does something.
        accepted = send(client, genuine)
        assert accepted.status_code == 200, describe(accepted)
        assert Counts.now() != before.counts


@FUZZ
@given(data=st.data())
def test_structurally_bad_requests_are_refused_and_change_nothing(
    telnyx: TelnyxDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the gates in front of verification: a validly signed request on a look-alike
    path (404), with another method (405) or a body over 64 KiB (413) does nothing."""
    with isolated():
        client = Client()
        genuine, calls = genuine_situation(data, telnyx, make_call)
        how = data.draw(st.sampled_from(["path", "method", "oversized"]), label="how")
        method, expected, delivery = "POST", 404, genuine
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
            delivery = sign(telnyx, genuine.body, url=f"https://voice.example.test{path}")
        elif how == "method":
            method = data.draw(
                st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]), label="method"
            )
            expected = 405
        else:
            document = json.loads(genuine.body)
            size = data.draw(st.integers(BODY_LIMIT + 1, 3 * BODY_LIMIT), label="size")
            document["meta"]["padding"] = ""
            document["meta"]["padding"] = "x" * (size - len(encode(document)))
            body = encode(document)
            assert len(body) == size
            delivery, expected = sign(telnyx, body), 413
        before = Snapshot.take(*calls)

        response = send(client, delivery, method=method)
        event(f"{how} -> {response.status_code}")

        assert response.status_code == expected, describe(response)
        assert (changes := before.diff(Snapshot.take(*calls))) == [], changes


# == 2. validly signed, malformed bodies ========================================================


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


def hostile() -> st.SearchStrategy[Any]:
    """A value no well-behaved Telnyx event holds: controls, escapes, huge, wrong type."""
    return st.one_of(
        nasty_text(surrogates=True), nasty_text(surrogates=True), huge_text(), _odd_json()
    )


def plausible_event(data: st.DataObject, live: Call, done: Call) -> dict[str, Any]:
    """An event Telnyx could send about the live call, the finished one or a new leg."""
    event_type = data.draw(st.sampled_from(EVENT_TYPES), label="event type")
    whose = data.draw(st.sampled_from(["live", "live", "live", "done", "new"]), label="whose")
    call = {"live": live, "done": done}.get(whose)
    turn = data.draw(st.sampled_from([live.turn_token, None, uuid.uuid4().hex]), label="turn")
    payload: dict[str, Any] = {
        "call_control_id": call.provider_call_id if call else new_control_id(),
        "connection_id": TELNYX_CONNECTION,
        "client_state": data.draw(
            st.sampled_from(
                [
                    clientstate.encode(call.call_id, turn) if call else None,
                    clientstate.encode(str(uuid.uuid4())),
                    None,
                    "bm90IG91cnM=",
                ]
            ),
            label="state",
        ),
        "from": data.draw(
            st.sampled_from([OUR_NUMBER, FRIEND, STRANGER, LONG_NUMBER]), label="from"
        ),
        "to": data.draw(st.sampled_from([CALLEE, OUR_NUMBER, LONG_NUMBER]), label="to"),
        "direction": data.draw(st.sampled_from(["outgoing", "incoming", None]), label="direction"),
        "hangup_cause": data.draw(st.sampled_from(CAUSES), label="cause"),
        "digit": data.draw(st.sampled_from(list("0123456789*#")), label="digit"),
        "result": data.draw(st.sampled_from(["human", "machine", "not_sure"]), label="result"),
        "payload": GREETING,
        "transcription_data": {
            "transcript": data.draw(st.text(max_size=30), label="words"),
            "is_final": data.draw(st.booleans(), label="final"),
            "confidence": data.draw(st.sampled_from([0.9, 0.9, *EDGE_NUMBERS]), label="conf"),
            "transcription_track": data.draw(st.sampled_from(["inbound", "outbound"])),
        },
    }
    occurred_at = data.draw(
        st.sampled_from(["2024-01-01T00:00:00Z"] * 4 + EDGE_ISO_TIMES), label="occurred_at"
    )
    return envelope(event_type, payload, occurred_at=occurred_at)


def mutate(document: dict[str, Any], data: st.DataObject) -> Any:
    """Hostile changes anywhere: a control or surrogate slipped into a value, a value
    replaced by hostile text or another JSON type, or a key deleted."""
    for _ in range(data.draw(st.integers(0, 4), label="mutations")):
        payload = document["data"].get("payload")
        payload = payload if isinstance(payload, dict) else {}
        transcription = payload.get("transcription_data")
        # The payload, where the ids and words are, is the likeliest target.
        holders = [
            document,
            document["data"],
            payload,
            payload,
            payload,
            transcription if isinstance(transcription, dict) else {},
        ]
        holder = data.draw(st.sampled_from(holders), label="where")
        if not holder:
            continue
        key = data.draw(st.sampled_from(sorted(holder)), label="key")
        how = data.draw(st.sampled_from(["poison", "poison", "replace", "delete"]), label="how")
        if how == "delete":
            del holder[key]
        elif how == "poison" and isinstance(holder[key], str):
            value = holder[key]
            at = data.draw(st.integers(0, len(value)), label="at")
            bad = data.draw(st.sampled_from(CONTROL_CHARS + SURROGATES), label="bad char")
            holder[key] = value[:at] + bad + value[at:]
        else:
            holder[key] = data.draw(hostile(), label=key)
        if not isinstance(document.get("data"), dict):
            break
    return document


def malformed_body(data: st.DataObject, live: Call, done: Call) -> bytes:
    """A hostile body: mostly a plausible event with hostile parts, else odd JSON or not JSON."""
    shape = data.draw(st.sampled_from(["event"] * 8 + ["json", "raw"]), label="shape")
    if shape == "raw":
        return data.draw(
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(
                    [
                        b"",
                        b"this is not json",
                        b'{"data": {"event_type": ',
                        b"\xff\xfe{}",
                        b"[" * 50000,
                        b"event_type=call.hangup&call_control_id="
                        + (live.provider_call_id or "").encode(),
                        b"\xef\xbb\xbf"
                        + encode(
                            envelope("call.answered", {"call_control_id": live.provider_call_id})
                        ),
                        # A lone surrogate as raw UTF-8-style bytes
                        # (json.loads decodes with surrogatepass).
                        b'{"data": {"event_type": "call.transcription", "id": "e1", "payload": {'
                        b'"call_control_id": "'
                        + (live.provider_call_id or "").encode()
                        + b'", "transcription_data": {"transcript": "hi \xed\xa0\x80 there"}}}}',
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
                            st.sampled_from(["data", "event_type", "payload", "id"])
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
    return encode(mutate(plausible_event(data, live, done), data))


@FUZZ
@given(data=st.data())
def test_malformed_signed_requests_never_5xx_and_4xx_changes_nothing(
    telnyx: TelnyxDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the parser and the services from hostile but authentic input: no 500s, no
    half-applied 4xx, no change to a finished call, no control character in storage."""
    with isolated():
        client = Client()
        live = outbound(
            make_call,
            state=data.draw(st.sampled_from(LIVE_STATES), label="state"),
            turn_token=uuid.uuid4().hex,
        )
        done = finished_call(
            make_call,
            provider="telnyx",
            provider_call_id=new_control_id(),
            state=data.draw(st.sampled_from(END_STATES), label="end state"),
            from_number=OUR_NUMBER,
            to_number=CALLEE,
        )
        content_type = data.draw(
            st.sampled_from(
                [
                    "application/json",
                    "application/json",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                    "",
                    "application/json; charset=latin-1",
                ]
            ),
            label="content type",
        )
        delivery = sign(telnyx, malformed_body(data, live, done), content_type=content_type)
        before = Snapshot.take(live, done)
        finished = terminal_facts(done)

        response = send(client, delivery)

        grown = Counts.now()
        event(
            f"status {response.status_code} {bytes(response.content[:40])!r} "
            f"+{grown.events - before.counts.events}ev +{grown.calls - before.counts.calls}calls"
        )
        assert response.status_code < 500, describe(response)
        if len(delivery.body) > BODY_LIMIT:
            assert response.status_code == 413, describe(response)
        after = Snapshot.take(live, done)
        if 400 <= response.status_code < 500:
            assert (changes := before.diff(after)) == [], (describe(response), changes)
        assert terminal_facts(done) == finished
        assert_moved_forward(before.rows[live.pk]["state"], after.rows[live.pk]["state"])
        assert (problems := stored_text_problems()) == [], problems


# == 3. sequences of genuine events =============================================================


WORDS = st.from_regex(r"[A-Za-z]{1,10}( [A-Za-z]{1,10}){0,3}", fullmatch=True)
CONFIDENCES: list[Any] = [0.8, 0.8, 0.8, 1, 0, None, "high", *EDGE_NUMBERS]


def sequence_event(data: st.DataObject, call: Call, token: str) -> tuple[dict[str, Any], bool]:
    """One genuine Call Control event for `call`, as Telnyx sends them, and whether it carries
    words that must become a transcript line while the call is live."""
    heard = False
    event_type = data.draw(st.sampled_from(EVENT_TYPES), label="event type")
    turn = data.draw(st.sampled_from([token, uuid.uuid4().hex, None]), label="turn")
    state = clientstate.encode(call.call_id, turn)
    fields: dict[str, Any] = {}
    if event_type == "call.initiated":
        fields = {"direction": "outgoing", "state": "bridging"}
    elif event_type == "call.transcription":
        clean = data.draw(st.booleans(), label="clean words")
        words = WORDS if clean else nasty_text(min_size=1, surrogates=True)
        transcription = {
            "transcript": data.draw(words, label="words"),
            "is_final": data.draw(st.booleans(), label="final"),
            "confidence": data.draw(st.sampled_from(CONFIDENCES), label="confidence"),
            "transcription_track": data.draw(st.sampled_from(["inbound", "outbound"])),
        }
        fields = {"transcription_data": transcription}
        heard = (
            clean
            and transcription["is_final"]
            and turn in (token, None)
            and transcription["transcription_track"] == "inbound"
        )
    elif event_type == "call.dtmf.received":
        fields = {"digit": data.draw(st.sampled_from(list("0123456789*#")), label="digit")}
    elif event_type == "call.hangup":
        fields = {
            "hangup_cause": data.draw(st.sampled_from(CAUSES), label="cause"),
            "hangup_source": "callee",
            "state": "hangup",
        }
    elif event_type == "call.speak.started":
        fields = {"payload": GREETING}
    elif event_type == "call.machine.detection.ended":
        results = ["human", "machine", "not_sure"]
        fields = {"result": data.draw(st.sampled_from(results), label="result")}
    return envelope(event_type, payload_for(call, state, **fields)), heard


def user_lines(call: Call) -> int:
    return TranscriptEntry.objects.filter(call=call, speaker="user").count()


@FUZZ
@given(data=st.data())
def test_sequences_of_genuine_events_only_move_forward(
    telnyx: TelnyxDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the state machine and both kinds of de-duplication under Telnyx's real
    behaviour: events in any order, some re-sent verbatim, some redelivered (same id); and
    the caller's words, whatever confidence comes with them, are kept once while live."""
    with isolated():
        client = Client()
        token = uuid.uuid4().hex
        mode = data.draw(st.sampled_from(["conversation", "notify"]), label="mode")
        metadata = (
            {"initialMessage": GREETING, "mode": mode}
            if data.draw(st.booleans(), label="greeting")
            else {}
        )
        call = outbound(make_call, mode=mode, metadata=metadata, turn_token=token)
        sent: list[tuple[dict[str, Any], Delivery]] = []
        for index in range(data.draw(st.integers(1, 12), label="steps")):
            again = data.draw(
                st.sampled_from(["no", "no", "verbatim", "redelivery"]) if sent else st.just("no"),
                label="again",
            )
            heard = False
            if again == "no":
                document, heard = sequence_event(data, call, token)
                delivery = sign(telnyx, encode(document))
                sent.append((document, delivery))
            else:
                document, delivery = data.draw(st.sampled_from(sent), label="which")
                if again == "redelivery":  # same event id, next attempt, signed anew
                    document = {
                        **document,
                        "meta": {**document["meta"], "attempt": document["meta"]["attempt"] + 1},
                    }
                    delivery = sign(telnyx, encode(document))
            before, lines = Snapshot.take(call), user_lines(call)

            response = send(client, delivery)

            after = Snapshot.take(call)
            step = f"step {index} again={again} {delivery.body[:160]!r}"
            assert response.status_code == 200, (step, describe(response))
            assert_moved_forward(before.rows[call.pk]["state"], after.rows[call.pk]["state"], step)
            if before.rows[call.pk]["state"] in END_STATES:
                assert (
                    after.rows[call.pk]["transcript_lines"]
                    == before.rows[call.pk]["transcript_lines"]
                ), step
            elif heard:
                assert user_lines(call) == lines + 1, ("words lost", step)
            if again != "no":
                assert after.counts.events == before.counts.events, step
                assert after.counts.transcript == before.counts.transcript, step
                assert after.rows[call.pk]["state"] == before.rows[call.pk]["state"], step
            assert (problems := stored_text_problems()) == [], (step, problems)


# == 4. pinned examples of defects this fuzzing found ===========================================
# Plain tests, so that each one fails on every run until it is fixed, whatever the seed.


@pytest.mark.parametrize("confidence", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_words_with_an_unusable_confidence_are_kept(
    telnyx: TelnyxDriver, make_call: Any, confidence: str
) -> None:
    """providers/telnyx/webhooks.py `_confidence` passes NaN and the infinities through
    (SQLite's JSON check then fails the CallEvent insert, `_record` takes the IntegrityError
    for a duplicate and the words are silently dropped; PostgreSQL answers 500), and
    `float()` of an integer beyond float range raises OverflowError (500). Twilio and Plivo
    drop a confidence they cannot use and keep the words."""
    token = uuid.uuid4().hex
    call = outbound(make_call, state="listening", turn_token=token)
    payload = payload_for(
        call,
        clientstate.encode(call.call_id, token),
        transcription_data={"transcript": "yes please", "is_final": True, "confidence": 0.5},
    )
    body = encode(envelope("call.transcription", payload))
    body = body.replace(b'"confidence": 0.5', b'"confidence": ' + confidence.encode())

    response = send(Client(), sign(telnyx, body))

    assert response.status_code == 200, describe(response)
    assert list(TranscriptEntry.objects.values_list("text", flat=True)) == ["yes please"]


@pytest.mark.parametrize("stamp", EDGE_ISO_TIMES)
@pytest.mark.parametrize(
    ("event_type", "state"), [("call.answered", "answered"), ("call.hangup", "completed")]
)
def test_an_event_stamped_at_the_edge_of_time_still_applies(
    telnyx: TelnyxDriver, make_call: Any, stamp: str, event_type: str, state: str
) -> None:
    """`occurred_at` is used as answered_at/ended_at as given: year 9999 overflows
    `answered_at + maxDurationSeconds` (calls/services/lifecycle.py `call_mark_answered`),
    year 1 with a positive offset is before datetime.min in UTC, and PostgreSQL refuses UTC
    offsets beyond ±15:59 — a 500 each time. An unusable `occurred_at` should only lose the
    carrier's clock, as an unreadable one already does (providers/telnyx/webhooks.py)."""
    call = outbound(make_call)
    payload = payload_for(call, hangup_cause="normal_clearing")
    body = encode(envelope(event_type, payload, occurred_at=stamp))

    response = send(Client(), sign(telnyx, body))

    assert response.status_code == 200, describe(response)
    call.refresh_from_db()
    assert call.state == state
