"""Hypothesis fuzzing of the Twilio webhook, through the Django test client.

Three properties, each over generated requests against the real Twilio adapter (on the fake
REST API of tests/fakes/carriers/twilio.py):

1. A forged request (no, blank, random, garbled, truncated signature; one made with another
   auth token, over another URL, host or body; a wrong algorithm header) is answered 401 and
   changes nothing; a look-alike path is 404, another method 405, a body over 64 KiB 413.
   Each example then posts the genuine request and sees it accepted, so the forgery differs
   from a working request only by what makes it forged.
2. A validly signed but malformed request (controls, huge or empty values, duplicated keys,
   JSON or garbage bodies, odd content types, unknown or finished calls, timestamps at the
   edges of time, caller numbers hundreds of digits long) never gets a 5xx; a 4xx leaves
   every table as it was; a finished call never changes; no stored text holds a control
   character, and none is longer than its column.
3. Random sequences of genuine callbacks for one call, with re-deliveries: always 200, the
   state only moves forward, a re-delivered request adds no event or transcript line, and
   the caller's words become one transcript line while the call is live, whatever
   Confidence comes with them.

Section 4 pins the defects this fuzzing found as plain tests, so that each one fails on every
run, whatever the seed, until it is fixed.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.test import Client
from hypothesis import assume, event, given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from calls.models import Call, TranscriptEntry
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import (
    CALLEE,
    FRIEND,
    GREETING,
    OUR_NUMBER,
    PUBLIC_HOST,
    STRANGER,
    Delivery,
)
from tests.fakes.carriers.twilio import TWILIO_ACCOUNT, TWILIO_TOKEN, TwilioDriver
from tests.fakes.signing import twilio_sign
from tests.fuzz.conftest import (
    BASE64_ALPHABET,
    BODY_LIMIT,
    EDGE_NUMBERS,
    EDGE_RFC2822_TIMES,
    END_STATES,
    FUZZ,
    LIVE_STATES,
    LONG_NUMBER,
    Counts,
    Snapshot,
    assert_moved_forward,
    describe,
    finished_call,
    garbled,
    huge_text,
    isolated,
    nasty_text,
    send,
    stored_text_problems,
    terminal_facts,
)

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
SIGNATURE = "X-Twilio-Signature"
STATUSES = [
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
]
ENDING = ["completed", "busy", "no-answer", "failed", "canceled"]


@pytest.fixture
def twilio(configure: Any) -> TwilioDriver:
    driver = Carrier(TwilioDriver(), configure).start()
    assert isinstance(driver, TwilioDriver)
    return driver


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def outbound(make_call: Any, *, state: str = "initiated", **fields: Any) -> Call:
    """An outbound Twilio call we placed."""
    call: Call = make_call(
        provider="twilio",
        provider_call_id=new_sid(),
        state=state,
        from_number=OUR_NUMBER,
        to_number=CALLEE,
        **fields,
    )
    return call


def url_for(
    path: str = "/voice/webhook",
    query: list[tuple[str, str]] | None = None,
    origin: str = f"https://{PUBLIC_HOST}",
) -> str:
    encoded = urlencode(query or [])
    return f"{origin}{path}" + (f"?{encoded}" if encoded else "")


def call_params(call: Call, **fields: str) -> dict[str, str]:
    return {
        "AccountSid": TWILIO_ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": call.provider_call_id or "",
        "Direction": "outbound-api",
        "From": call.from_number,
        "To": call.to_number,
        **fields,
    }


def signed(
    url: str, body: bytes, content_type: str = FORM, *, headers: dict[str, str] | None = None
) -> Delivery:
    """A request Twilio itself could have sent: signed over exactly this URL and body."""
    try:
        signature = twilio_sign(url, body, TWILIO_TOKEN)
    except UnicodeDecodeError:  # not UTF-8: nothing anyone signs can match it
        signature = "bm90IHNpZ25hYmxl"
    return Delivery(
        label="fuzz",
        url=url,
        body=body,
        content_type=content_type,
        headers={SIGNATURE: signature, **(headers or {})},
    )


def signed_json(url: str, body: bytes) -> Delivery:
    """Twilio's JSON variant: the URL carries bodySHA256 and only the URL is signed."""
    digest = hashlib.sha256(body).hexdigest()
    url = url + ("&" if "?" in url else "?") + urlencode({"bodySHA256": digest})
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, {})
    return Delivery(
        label="fuzz-json",
        url=url,
        body=body,
        content_type="application/json",
        headers={SIGNATURE: signature},
    )


# == 1. forged and structurally bad requests ====================================================


def genuine_situation(data: st.DataObject, make_call: Any) -> tuple[Delivery, list[Call]]:
    """A genuine, signed request that changes something when accepted, and its calls."""
    kind = data.draw(st.sampled_from(["status", "fetch", "speech", "inbound"]), label="kind")
    if kind == "status":
        call = outbound(make_call)
        status = data.draw(st.sampled_from(["ringing", "in-progress", *ENDING]), label="status")
        url = url_for(query=[("callId", call.call_id), ("type", "status")])
        params = call_params(
            call,
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(data.draw(st.integers(0, 99))),
        )
        return signed(url, urlencode(params).encode()), [call]
    if kind == "fetch":
        call = outbound(
            make_call,
            state=data.draw(st.sampled_from(["initiated", "ringing"])),
            metadata={"initialMessage": GREETING, "mode": "conversation"},
        )
        url = url_for(query=[("callId", call.call_id)])
        return signed(url, urlencode(call_params(call, CallStatus="in-progress")).encode()), [call]
    if kind == "speech":
        token = uuid.uuid4().hex
        call = outbound(make_call, state="listening", turn_token=token)
        words = data.draw(st.text(min_size=1, max_size=40).filter(str.strip), label="words")
        url = url_for(query=[("callId", call.call_id), ("flow", "gather"), ("turnToken", token)])
        params = call_params(call, CallStatus="in-progress", SpeechResult=words, Confidence="0.9")
        return signed(url, urlencode(params).encode()), [call]
    caller = data.draw(st.sampled_from([FRIEND, STRANGER]), label="caller")
    params = {
        "AccountSid": TWILIO_ACCOUNT,
        "CallSid": new_sid(),
        "Direction": "inbound",
        "From": caller,
        "To": OUR_NUMBER,
        "CallStatus": "ringing",
    }
    return signed(url_for(), urlencode(params).encode()), []


def _other_url(url: str, data: st.DataObject) -> str:
    """The same request URL with one part changed: scheme, host, port, path or query."""
    parts = urlsplit(url)
    part = data.draw(
        st.sampled_from(["scheme", "host", "port", "path", "query"]), label="changed part"
    )
    if part == "scheme":
        return urlunsplit(("http", *parts[1:]))
    if part == "host":
        host = data.draw(
            st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(example|test|org)", fullmatch=True), label="host"
        )
        return urlunsplit((parts.scheme, host, *parts[2:]))
    if part == "port":
        port = data.draw(st.integers(1, 65535).filter(lambda p: p != 443), label="port")
        return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", *parts[2:]))
    if part == "path":
        path = data.draw(
            st.sampled_from(
                ["/voice/webhook/", "/voice/webhook/x", "/", "/other/webhook", "/VOICE/webhook"]
            ),
            label="path",
        )
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    extra = data.draw(
        st.sampled_from(
            [("type", "status"), ("flow", "gather"), ("callId", str(uuid.uuid4())), ("x", "1")]
        ),
        label="query pair",
    )
    pairs = [pair for pair in _query_pairs(parts.query) if pair[0] != extra[0]]
    if data.draw(st.booleans(), label="drop instead") and pairs:
        pairs = pairs[1:]
    else:
        pairs.append(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), ""))


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _other_body(body: bytes, data: st.DataObject) -> bytes:
    """The form with one field changed, added or removed."""
    pairs = _query_pairs(body.decode())
    how = data.draw(st.sampled_from(["change", "add", "drop"]), label="body change")
    if how == "drop" and len(pairs) > 1:
        index = data.draw(st.integers(0, len(pairs) - 1), label="dropped")
        return urlencode(pairs[:index] + pairs[index + 1 :]).encode()
    if how == "change":
        index = data.draw(st.integers(0, len(pairs) - 1), label="changed")
        value = data.draw(
            st.sampled_from(["completed", "ringing", "", "CA" + "0" * 32, STRANGER, "hello"]),
            label="new value",
        )
        pairs[index] = (pairs[index][0], value)
        return urlencode(pairs).encode()
    return urlencode([*pairs, ("Extra", "1")]).encode()


def _with_port_443(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.hostname}:443", *parts[2:]))


def forge(genuine: Delivery, data: st.DataObject) -> tuple[Delivery, dict[str, str]]:
    """A forged copy of `genuine` (posted to the same URL) and extra META for posting it."""
    real = genuine.headers[SIGNATURE]
    honest = {
        twilio_sign(genuine.url, genuine.body, TWILIO_TOKEN),
        twilio_sign(_with_port_443(genuine.url), genuine.body, TWILIO_TOKEN),
    }
    how = data.draw(
        st.sampled_from(
            [
                "missing",
                "empty",
                "blank",
                "random",
                "garbled",
                "truncated",
                "wrong-token",
                "other-url",
                "other-body",
                "spoofed-host",
                "algorithm",
                "comma-first",
            ]
        ),
        label="how",
    )
    meta: dict[str, str] = {}
    headers = {k: v for k, v in genuine.headers.items() if k != SIGNATURE}
    if how == "missing":
        signature = None
    elif how == "empty":
        signature = ""
    elif how == "blank":
        signature = data.draw(st.sampled_from([" ", "\t", "  ,  "]), label="blank")
    elif how == "random":
        signature = data.draw(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=60),
            label="random signature",
        )
    elif how == "garbled":
        signature = garbled(real, data, BASE64_ALPHABET)
    elif how == "truncated":
        signature = real[: data.draw(st.integers(1, len(real) - 1), label="kept")]
    elif how == "wrong-token":
        token = data.draw(
            st.text("0123456789abcdef", min_size=32, max_size=32).filter(
                lambda t: t != TWILIO_TOKEN
            ),
            label="token",
        )
        signature = twilio_sign(genuine.url, genuine.body, token)
    elif how == "other-url":
        signature = twilio_sign(_other_url(genuine.url, data), genuine.body, TWILIO_TOKEN)
    elif how == "other-body":
        signature = twilio_sign(genuine.url, _other_body(genuine.body, data), TWILIO_TOKEN)
    elif how == "spoofed-host":
        other = data.draw(
            st.sampled_from(["other-app.example.org", "evil.test", "voice.example.test.evil.org"]),
            label="other",
        )
        spoofed = urlunsplit(("https", other, *urlsplit(genuine.url)[2:]))
        signature = twilio_sign(spoofed, genuine.body, TWILIO_TOKEN)
        meta = {"HTTP_HOST": other, "HTTP_X_FORWARDED_HOST": other}
    elif how == "algorithm":
        signature = real
        headers["X-Twilio-Webhooks-Signature-Settings"] = data.draw(
            st.sampled_from(
                [
                    "algorithm=HMAC_SHA256",
                    "algorithm=hmac_sha256",
                    "algorithm=MD5",
                    "key=x,algorithm=HMAC_SHA512",
                ]
            ),
            label="settings",
        )
    else:
        signature = f"{garbled(real, data, BASE64_ALPHABET)},{real}"
    if signature is not None:
        # A change Twilio's own signing cannot tell apart is no forgery.
        assume(signature.split(",")[0].strip() not in honest or how == "algorithm")
        headers[SIGNATURE] = signature
    return Delivery(genuine.label, genuine.url, genuine.body, genuine.content_type, headers), meta


@FUZZ
@given(data=st.data())
def test_forged_requests_are_401_and_change_nothing(
    twilio: TwilioDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the signature check: only Twilio, with our token, over our URL and this body,
    can move a call, create one or leave a replay key."""
    with isolated():
        client = Client()
        genuine, calls = genuine_situation(data, make_call)
        forged, meta = forge(genuine, data)
        before = Snapshot.take(*calls)

        response = send(client, forged, **meta)

        assert response.status_code == 401, describe(response)
        assert (changes := before.diff(Snapshot.take(*calls))) == [], changes
        # The control: the same request, honestly signed, is accepted and does something.
        accepted = send(client, genuine)
        assert accepted.status_code == 200, describe(accepted)
        assert Counts.now() != before.counts


@FUZZ
@given(data=st.data())
def test_structurally_bad_requests_are_refused_and_change_nothing(
    twilio: TwilioDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the gates in front of verification: a validly signed request on a look-alike
    path (404), with another method (405) or a body over 64 KiB (413) does nothing."""
    with isolated():
        client = Client()
        genuine, calls = genuine_situation(data, make_call)
        how = data.draw(st.sampled_from(["path", "method", "oversized"]), label="how")
        method, expected = "POST", 404
        delivery = genuine
        if how == "path":
            segment = data.draw(
                st.from_regex(r"[a-z0-9_.~]{1,12}", fullmatch=True).filter(
                    lambda s: s not in ("webhook", "hold-music")
                ),
                label="segment",
            )
            path = data.draw(
                st.sampled_from(
                    [f"/voice/{segment}", f"/voice/webhook/{segment}", f"/voice/webhook{segment}"]
                ),
                label="path",
            )
            parts = urlsplit(genuine.url)
            delivery = signed(
                urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), genuine.body
            )
        elif how == "method":
            method = data.draw(
                st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]), label="method"
            )
            expected = 405
        else:
            padding = data.draw(st.integers(BODY_LIMIT + 1, 3 * BODY_LIMIT), label="size")
            body = genuine.body + b"&Padding=" + b"x" * (padding - len(genuine.body) - 9)
            assert len(body) == padding
            delivery = signed(genuine.url, body)
            expected = 413
        before = Snapshot.take(*calls)

        response = send(client, delivery, method=method)
        event(f"{how} -> {response.status_code}")

        assert response.status_code == expected, describe(response)
        assert (changes := before.diff(Snapshot.take(*calls))) == [], changes


# == 2. validly signed, malformed requests ======================================================

CONTENT_TYPES = [
    FORM,
    f"{FORM}; charset=utf-8",
    "application/json",
    "APPLICATION/JSON; charset=utf-8",
    "text/plain",
    "",
    "application/xml",
    "multipart/form-data; boundary=zzz",
    "application/octet-stream",
]
FIELDS = [
    "CallSid",
    "CallStatus",
    "Direction",
    "From",
    "To",
    "SpeechResult",
    "Digits",
    "Confidence",
    "Timestamp",
    "SequenceNumber",
    "AccountSid",
    "CallbackSource",
    "CallDuration",
    "StirVerstat",
]


def _values(field: str, live: Call, done: Call, surrogates: bool = False) -> Any:
    """Values for one Twilio field: plausible ones, hostile ones and huge ones."""
    generic = st.one_of(nasty_text(surrogates=surrogates), huge_text())
    plausible: dict[str, list[str]] = {
        "CallSid": [
            live.provider_call_id or "",
            done.provider_call_id or "",
            new_sid(),
            "CA\x00",
            " ",
            "CA" + "7" * 500,
            (live.provider_call_id or "") + "\x00",
        ],
        "CallStatus": STATUSES + ["", "exploded", "COMPLETED", " ringing "],
        "Direction": ["inbound", "outbound-api", "outbound-dial", "", "sideways"],
        "From": [
            FRIEND,
            STRANGER,
            OUR_NUMBER,
            "+" + "9" * 60,
            LONG_NUMBER,
            "<script>",
            "client:alice",
        ],
        "To": [OUR_NUMBER, CALLEE, "sip:x@y", "", LONG_NUMBER],
        "Confidence": ["nan", "inf", "-inf", "1e999", "-1", "0.5", "x"],
        "Timestamp": [
            "yesterday",
            "Mon, 01 Jan 2024 00:00:00 +0000",
            "Mon, 99 Foo 2024",
            "Thu, 01 Jan 1970 00:00:00 -0000",
            *EDGE_RFC2822_TIMES,
        ],
        "SequenceNumber": ["-1", "0", "99999999999999999999", "x"],
        "Digits": ["1", "123#", "w", "*"],
    }
    likely = st.sampled_from(plausible.get(field, ["", "x"]))
    return st.one_of(likely, likely, generic)


def _query(data: st.DataObject, live: Call, done: Call) -> list[tuple[str, str]]:
    options: dict[str, Any] = {
        "callId": st.one_of(
            st.sampled_from(
                [
                    live.call_id,
                    done.call_id,
                    str(uuid.uuid4()),
                    "not-a-uuid",
                    "x" * 300,
                    live.call_id + "\x00",
                ]
            ),
            nasty_text(),
        ),
        "type": st.one_of(st.sampled_from(["status", "", "STATUS"]), nasty_text()),
        "flow": st.one_of(st.sampled_from(["gather", "hold", ""]), nasty_text()),
        "turnToken": st.one_of(
            st.sampled_from([live.turn_token or "", uuid.uuid4().hex]), nasty_text()
        ),
        "lang": st.one_of(st.sampled_from(["en-US", "xx", "de-DE"]), nasty_text()),
        "attempt": st.sampled_from(["1", "2", "999999", "-1", "x", "1" * 40]),
    }
    pairs: list[tuple[str, str]] = []
    for name in data.draw(
        st.lists(st.sampled_from(sorted(options)), max_size=6), label="query names"
    ):
        pairs.append((name, data.draw(options[name], label=f"query {name}")))
    pairs += data.draw(
        st.lists(st.tuples(nasty_text(max_size=8), nasty_text(max_size=8)), max_size=2),
        label="odd query pairs",
    )
    return pairs


def malformed_request(data: st.DataObject, live: Call, done: Call) -> Delivery:
    """A validly signed request with a hostile URL query and body."""
    path = data.draw(st.sampled_from(["/voice/webhook", "/voice/webhook/"]), label="path")
    url = url_for(path, _query(data, live, done))
    shape = data.draw(
        st.sampled_from(["form", "form", "form", "json", "json-sha256", "raw"]), label="shape"
    )
    fitting = "application/json" if shape.startswith("json") else FORM
    content_type = data.draw(
        st.one_of(st.just(fitting), st.just(fitting), st.sampled_from(CONTENT_TYPES)),
        label="content type",
    )
    if shape == "raw":
        body = data.draw(
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(
                    [
                        b"",
                        b"=&=&&&==",
                        b"CallSid=CA%ZZ&%00=%ff",
                        b"\xff\xfe",
                        b"CallSid=%ED%A0%80&CallStatus=ringing",
                        b"[" * 5000,
                        b"CallSid=CA1&CallSid=CA2&CallStatus=completed",
                    ]
                ),
            ),
            label="raw body",
        )
        return signed(url, body, content_type)
    extras = st.lists(st.one_of(st.sampled_from(FIELDS), nasty_text(max_size=10)), max_size=8)
    # Mostly callback-shaped (so the services see it), then hostile extra fields.
    names = [
        *data.draw(
            st.sampled_from(
                [
                    ("CallSid", "CallStatus"),
                    ("CallSid", "CallStatus", "Direction"),
                    ("CallSid", "Direction", "From", "To"),
                    ("CallSid", "SpeechResult"),
                    ("CallSid", "Digits", "CallStatus"),
                ]
            ),
            label="callback fields",
        ),
        *data.draw(extras, label="extra fields"),
    ]
    if shape == "form":
        pairs = [(name, data.draw(_values(name, live, done), label=name)) for name in names]
        if pairs and data.draw(st.booleans(), label="duplicate a key"):
            name = pairs[0][0]
            pairs.append((name, data.draw(_values(name, live, done), label=f"{name} again")))
        return signed(url, urlencode(pairs).encode(), content_type)
    odd = st.one_of(
        st.integers(),
        st.floats(),
        st.sampled_from(EDGE_NUMBERS),
        st.none(),
        st.booleans(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    document: Any = {
        name: data.draw(st.one_of(_values(name, live, done, surrogates=True), odd), label=name)
        for name in names
    }
    document = data.draw(
        st.sampled_from([document, document, [document], "text", 7, None]), label="json document"
    )
    body = json.dumps(document).encode()  # lone surrogates travel as \\ud800 escapes
    if shape == "json-sha256":
        return signed_json(url, body)
    return signed(url, body, content_type)


@FUZZ
@given(data=st.data())
def test_malformed_signed_requests_never_5xx_and_4xx_changes_nothing(
    twilio: TwilioDriver, make_call: Any, data: st.DataObject
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
            provider="twilio",
            provider_call_id=new_sid(),
            state=data.draw(st.sampled_from(END_STATES), label="end state"),
            from_number=OUR_NUMBER,
            to_number=CALLEE,
        )
        delivery = malformed_request(data, live, done)
        before = Snapshot.take(live, done)
        finished = terminal_facts(done)

        response = send(client, delivery)

        event(f"status {response.status_code} {bytes(response.content[:40])!r}")
        assert response.status_code < 500, describe(response)
        if len(delivery.body) > BODY_LIMIT:
            assert response.status_code == 413, describe(response)
        after = Snapshot.take(live, done)
        if 400 <= response.status_code < 500:
            assert (changes := before.diff(after)) == [], (describe(response), changes)
        assert terminal_facts(done) == finished
        assert_moved_forward(before.rows[live.pk]["state"], after.rows[live.pk]["state"])
        assert (problems := stored_text_problems()) == [], problems


# == 3. sequences of genuine callbacks ==========================================================


WORDS = st.from_regex(r"[A-Za-z]{1,10}( [A-Za-z]{1,10}){0,3}", fullmatch=True)
CONFIDENCES = ["0.8", "0.8", "nan", "inf", "-inf", "1e999", "-1", "x", ""]


def sequence_step(
    data: st.DataObject, call: Call, token: str, sequence: int
) -> tuple[Delivery, bool]:
    """One genuine callback for `call`, as Twilio sends them, and whether it carries words
    that must become a transcript line while the call is live."""
    kind = data.draw(
        st.sampled_from(
            ["status", "status", "fetch", "speech", "speech", "digits", "silence", "hold"]
        ),
        label="step",
    )
    if kind == "status":
        status = data.draw(st.sampled_from(STATUSES), label="status")
        url = url_for(query=[("callId", call.call_id), ("type", "status")])
        return signed(
            url,
            urlencode(
                call_params(
                    call,
                    CallStatus=status,
                    CallbackSource="call-progress-events",
                    SequenceNumber=str(sequence),
                )
            ).encode(),
        ), False
    if kind in ("fetch", "hold"):
        query = [("callId", call.call_id)] + ([("flow", "hold")] if kind == "hold" else [])
        return signed(
            url_for(query=query), urlencode(call_params(call, CallStatus="in-progress")).encode()
        ), False
    turn = data.draw(st.sampled_from([token, uuid.uuid4().hex, None]), label="turn")
    query = [("callId", call.call_id), ("flow", "gather")] + ([("turnToken", turn)] if turn else [])
    fields = {"CallStatus": "in-progress"}
    heard = False
    if kind == "speech":
        clean = data.draw(st.booleans(), label="clean words")
        fields.update(
            SpeechResult=data.draw(WORDS if clean else nasty_text(min_size=1), label="words"),
            Confidence=data.draw(st.sampled_from(CONFIDENCES), label="confidence"),
        )
        heard = clean and turn in (token, None)
    elif kind == "digits":
        fields["Digits"] = data.draw(st.from_regex(r"[0-9*#]{1,6}", fullmatch=True), label="digits")
    return signed(url_for(query=query), urlencode(call_params(call, **fields)).encode()), heard


def user_lines(call: Call) -> int:
    return TranscriptEntry.objects.filter(call=call, speaker="user").count()


@FUZZ
@given(data=st.data())
def test_sequences_of_genuine_callbacks_only_move_forward(
    twilio: TwilioDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the state machine and replay detection under Twilio's real behaviour:
    callbacks in any order, some delivered twice (also with a new idempotency token); and
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
        sent: list[Delivery] = []
        seen: set[tuple[str, bytes]] = set()
        for index in range(data.draw(st.integers(1, 12), label="steps")):
            resend, heard = bool(sent) and data.draw(st.booleans(), label="resend"), False
            if resend:
                delivery = data.draw(st.sampled_from(sent), label="again")
                if data.draw(st.booleans(), label="new idempotency token"):
                    delivery = Delivery(
                        delivery.label,
                        delivery.url,
                        delivery.body,
                        delivery.content_type,
                        {**delivery.headers, "I-Twilio-Idempotency-Token": str(uuid.uuid4())},
                    )
            else:
                delivery, heard = sequence_step(data, call, token, index)
                # The same callback twice is one delivery, whichever way it was produced.
                resend = (delivery.url, delivery.body) in seen
                sent.append(delivery)
            seen.add((delivery.url, delivery.body))
            before, lines = Snapshot.take(call), user_lines(call)

            response = send(client, delivery)

            after = Snapshot.take(call)
            step = f"step {index} resend={resend} {delivery.url} {delivery.body[:120]!r}"
            assert response.status_code == 200, (step, describe(response))
            assert_moved_forward(before.rows[call.pk]["state"], after.rows[call.pk]["state"], step)
            if before.rows[call.pk]["state"] in END_STATES:
                assert (
                    after.rows[call.pk]["transcript_lines"]
                    == before.rows[call.pk]["transcript_lines"]
                ), step
            elif heard and not resend:
                assert user_lines(call) == lines + 1, ("words lost", step)
            if resend:
                assert after.counts.events == before.counts.events, step
                assert after.counts.transcript == before.counts.transcript, step
                assert after.rows[call.pk]["state"] == before.rows[call.pk]["state"], step
            assert (problems := stored_text_problems()) == [], (step, problems)


# == 4. pinned examples of defects this fuzzing found ===========================================
# Plain tests, so that each one fails on every run until it is fixed, whatever the seed.


@pytest.mark.parametrize(("direction", "field"), [("inbound", "From"), ("outbound-api", "To")])
def test_a_new_call_with_a_very_long_number_is_not_a_server_error(
    twilio: TwilioDriver, direction: str, field: str
) -> None:
    """The session key of a call we did not place is built from every digit of the other
    party's number (calls/services/sessions.py `session_key_for`) and outgrows
    Call.session_key (200): PostgreSQL answers 500, SQLite keeps an over-long value."""
    ours = "To" if field == "From" else "From"
    params = {
        "AccountSid": TWILIO_ACCOUNT,
        "CallSid": new_sid(),
        "Direction": direction,
        field: LONG_NUMBER,
        ours: OUR_NUMBER,
        "CallStatus": "ringing",
    }

    response = send(Client(), signed(url_for(), urlencode(params).encode()))

    assert response.status_code == 200, describe(response)
    assert Call.objects.count() == 1
    assert stored_text_problems() == []


@pytest.mark.parametrize("stamp", EDGE_RFC2822_TIMES)
@pytest.mark.parametrize(
    ("status", "state"), [("in-progress", "answered"), ("completed", "completed")]
)
def test_a_status_stamped_at_the_edge_of_time_still_applies(
    twilio: TwilioDriver, make_call: Any, stamp: str, status: str, state: str
) -> None:
    """A carrier Timestamp is used as answered_at/ended_at as given: year 9999 overflows
    `answered_at + maxDurationSeconds` (calls/services/lifecycle.py `call_mark_answered`)
    and PostgreSQL refuses UTC offsets beyond ±15:59 — a 500 either way. A malformed
    Timestamp should only lose the carrier's clock (providers/twilio/webhooks.py)."""
    call = outbound(make_call)
    url = url_for(query=[("callId", call.call_id), ("type", "status")])
    body = urlencode(call_params(call, CallStatus=status, Timestamp=stamp)).encode()

    response = send(Client(), signed(url, body))

    assert response.status_code == 200, describe(response)
    call.refresh_from_db()
    assert call.state == state
