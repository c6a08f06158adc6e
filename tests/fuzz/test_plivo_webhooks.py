"""Hypothesis fuzzing of the Plivo webhook, through the Django test client.

Plivo signs with X-Plivo-Signature-V3 (HMAC over the URL with its sorted query, the sorted
POST parameters and a nonce) or the legacy V2 (the URL without query, and the nonce only).
Three properties, each against the real Plivo adapter on the fake REST API:

1. A forged request (headers missing, blank or half there; a random, garbled or truncated
   signature; one made with another auth token, another nonce, over another URL or host,
   or — V3 — over another body) is answered 401 and changes nothing; the genuine request is
   then accepted. A look-alike path is 404, another method 405, a body over 64 KiB 413.
2. A validly signed but malformed request (controls, huge or empty values, duplicated keys,
   JSON or garbage bodies, invalid UTF-8, odd content types and flows, unknown or finished
   calls, numbers hundreds of digits long) never gets a 5xx; a 4xx leaves every table as
   it was; a finished call never changes; no stored text holds a control character, and
   none is longer than its column. V2 does not sign the body, so V2 examples put any bytes
   at all in front of the parser.
3. Random sequences of genuine callbacks for one call (answer fetch with the request UUID
   upgraded to the CallUUID, GetInput results, hang-ups, document fetches), some re-sent
   verbatim: always 200, the state only moves forward, a re-sent request adds no event row
   or transcript line, and the caller's words become a transcript line while the call is
   live, whatever SpeechConfidenceScore comes with them.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.test import Client
from hypothesis import assume, event, given
from hypothesis import strategies as st

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
from tests.fakes.carriers.plivo import PLIVO_TOKEN, PlivoDriver, plivo_digits
from tests.fakes.signing import plivo_sign_v2, plivo_sign_v3
from tests.fuzz.conftest import (
    BASE64_ALPHABET,
    BODY_LIMIT,
    CONTROL_CHARS,
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
V3, V3_NONCE = "X-Plivo-Signature-V3", "X-Plivo-Signature-V3-Nonce"
V2, V2_NONCE = "X-Plivo-Signature-V2", "X-Plivo-Signature-V2-Nonce"
STATUSES = [
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "failed",
    "timeout",
    "cancel",
    "machine",
    "hangup",
]
ENDING = ["completed", "busy", "no-answer", "failed", "timeout", "cancel", "machine"]
FLOWS = ["answer", "hangup", "getinput", "xml-speak", "xml-listen"]


@pytest.fixture
def plivo(configure: Any) -> PlivoDriver:
    driver = Carrier(PlivoDriver(), configure).start()
    assert isinstance(driver, PlivoDriver)
    return driver


def outbound(make_call: Any, *, state: str = "initiated", **fields: Any) -> Call:
    """An outbound Plivo call we placed (its id is still the request UUID)."""
    call: Call = make_call(
        provider="plivo",
        provider_call_id=str(uuid.uuid4()),
        state=state,
        from_number=OUR_NUMBER,
        to_number=CALLEE,
        **fields,
    )
    return call


def url_for(
    query: list[tuple[str, str]] | None = None,
    path: str = "/voice/webhook",
    origin: str = f"https://{PUBLIC_HOST}",
) -> str:
    encoded = urlencode(query or [])
    return f"{origin}{path}" + (f"?{encoded}" if encoded else "")


def new_nonce() -> str:
    return str(uuid.uuid4().int)[:20]


def v2_sign(url: str, nonce: str, token: str = PLIVO_TOKEN) -> str:
    """X-Plivo-Signature-V2: HMAC-SHA256 of the URL without its query, then the nonce."""
    return plivo_sign_v2(url, nonce, token)


def v3_sign(url: str, body: bytes, nonce: str, token: str = PLIVO_TOKEN) -> str:
    """V3 as the plivo SDK's validator computes it; a body no one can form-decode gets a
    signature that cannot match."""
    return plivo_sign_v3(url, body, nonce, token)


def signed(
    url: str, body: bytes, *, version: int = 3, content_type: str = FORM, nonce: str | None = None
) -> Delivery:
    """A request Plivo itself could have sent, signed V3 or V2."""
    nonce = nonce or new_nonce()
    if version == 2:
        headers = {V2: v2_sign(url, nonce), V2_NONCE: nonce}
    else:
        headers = {V3: v3_sign(url, body, nonce), V3_NONCE: nonce}
    return Delivery(label="fuzz", url=url, body=body, content_type=content_type, headers=headers)


def call_params(call: Call, call_uuid: str | None = None, **fields: str) -> dict[str, str]:
    return {
        "CallUUID": call_uuid or call.provider_call_id or "",
        "Direction": "outbound",
        "From": plivo_digits(call.from_number),
        "To": plivo_digits(call.to_number),
        **fields,
    }


# == 1. forged and structurally bad requests ====================================================


def genuine_situation(
    data: st.DataObject, make_call: Any, version: int
) -> tuple[Delivery, list[Call]]:
    """A genuine, signed callback that changes something when accepted, and its calls."""
    # Drawn, not random: a failing example then replays with the very same signature.
    nonce = data.draw(st.integers(10**19, 10**20 - 1).map(str), label="nonce")
    kind = data.draw(
        st.sampled_from(["answer", "ringing", "hangup", "speech", "inbound"]), label="kind"
    )
    if kind == "answer":
        call = outbound(make_call, metadata={"initialMessage": GREETING, "mode": "conversation"})
        url = url_for([("callId", call.call_id), ("flow", "answer")])
        params = call_params(
            call,
            str(uuid.uuid4()),
            RequestUUID=call.provider_call_id or "",
            CallStatus="in-progress",
            Event="StartApp",
        )
        return signed(url, urlencode(params).encode(), version=version, nonce=nonce), [call]
    if kind == "ringing":
        call = outbound(make_call)
        url = url_for([("callId", call.call_id)])
        body = urlencode(call_params(call, CallStatus="ringing")).encode()
        return signed(url, body, version=version, nonce=nonce), [call]
    if kind == "hangup":
        call = outbound(make_call, state=data.draw(st.sampled_from(LIVE_STATES)))
        status = data.draw(st.sampled_from(ENDING), label="status")
        url = url_for([("callId", call.call_id), ("flow", "hangup")])
        params = call_params(call, CallStatus=status, Event="Hangup", HangupCause="NORMAL_CLEARING")
        return signed(url, urlencode(params).encode(), version=version, nonce=nonce), [call]
    if kind == "speech":
        token = uuid.uuid4().hex
        call = outbound(make_call, state="listening", turn_token=token)
        words = data.draw(st.text(min_size=1, max_size=40).filter(str.strip), label="words")
        url = url_for([("callId", call.call_id), ("flow", "getinput"), ("turnToken", token)])
        params = call_params(
            call,
            CallStatus="in-progress",
            Speech=words,
            SpeechConfidenceScore="0.9",
            InputType="speech",
        )
        return signed(url, urlencode(params).encode(), version=version, nonce=nonce), [call]
    caller = data.draw(st.sampled_from([FRIEND, STRANGER]), label="caller")
    params = {
        "CallUUID": str(uuid.uuid4()),
        "Direction": "inbound",
        "From": plivo_digits(caller),
        "To": plivo_digits(OUR_NUMBER),
        "CallStatus": "ringing",
        "Event": "StartApp",
    }
    return signed(url_for(), urlencode(params).encode(), version=version, nonce=nonce), []


def _other_url(url: str, data: st.DataObject, version: int) -> str:
    """The URL with one signed part changed (V2 does not sign the query)."""
    parts = urlsplit(url)
    choices = ["scheme", "host", "port", "path"] + (["query"] if version == 3 else [])
    part = data.draw(st.sampled_from(choices), label="changed part")
    if part == "scheme":
        return urlunsplit(("http", *parts[1:]))
    if part == "host":
        host = data.draw(
            st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(example|test|org)", fullmatch=True), label="host"
        )
        return urlunsplit((parts.scheme, host, *parts[2:]))
    if part == "port":
        port = data.draw(st.integers(1, 65535), label="port")
        return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", *parts[2:]))
    if part == "path":
        path = data.draw(
            st.sampled_from(
                ["/voice/webhook/", "/voice/webhook/x", "/", "/other/webhook", "/VOICE/webhook"]
            ),
            label="path",
        )
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    extra = data.draw(
        st.sampled_from(
            [("flow", "hangup"), ("flow", "getinput"), ("callId", str(uuid.uuid4())), ("x", "1")]
        ),
        label="query pair",
    )
    pairs = [pair for pair in pairs if pair[0] != extra[0]]
    if data.draw(st.booleans(), label="drop instead") and pairs:
        pairs = pairs[1:]
    else:
        pairs.append(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), ""))


def _other_body(body: bytes, data: st.DataObject) -> bytes:
    pairs = parse_qsl(body.decode(), keep_blank_values=True)
    how = data.draw(st.sampled_from(["change", "add", "drop"]), label="body change")
    if how == "drop" and len(pairs) > 1:
        index = data.draw(st.integers(0, len(pairs) - 1), label="dropped")
        return urlencode(pairs[:index] + pairs[index + 1 :]).encode()
    if how == "change":
        index = data.draw(st.integers(0, len(pairs) - 1), label="changed")
        value = data.draw(
            st.sampled_from(["completed", "ringing", "", str(uuid.uuid4()), "hello", "StartApp"]),
            label="new value",
        )
        pairs[index] = (pairs[index][0], value)
        return urlencode(pairs).encode()
    return urlencode([*pairs, ("Extra", "1")]).encode()


def _v2_digest(signature: str) -> bytes | None:
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except ValueError:  # binascii.Error included
        return None


def forge(genuine: Delivery, version: int, data: st.DataObject) -> tuple[Delivery, dict[str, str]]:
    """A forged copy of `genuine` (same URL and body posted) and extra META to post it with."""
    name, nonce_name = (V3, V3_NONCE) if version == 3 else (V2, V2_NONCE)
    real, nonce = genuine.headers[name], genuine.headers[nonce_name]

    def signature(
        url: str = genuine.url,
        body: bytes = genuine.body,
        nonce: str = nonce,
        token: str = PLIVO_TOKEN,
    ) -> str:
        return v3_sign(url, body, nonce, token) if version == 3 else v2_sign(url, nonce, token)

    headers = dict(genuine.headers)
    meta: dict[str, str] = {}
    how = data.draw(
        st.sampled_from(
            [
                "missing",
                "no-nonce",
                "only-nonce",
                "blank",
                "random",
                "garbled",
                "truncated",
                "wrong-token",
                "other-nonce",
                "other-url",
                "spoofed-host",
                "comma",
                *(["other-body"] if version == 3 else []),
            ]
        ),
        label="how",
    )
    if how == "missing":
        headers = {}
    elif how == "no-nonce":
        del headers[nonce_name]
    elif how == "only-nonce":
        del headers[name]
    elif how == "blank":
        headers[name] = data.draw(st.sampled_from([" ", "\t", " , "]), label="blank")
    elif how == "random":
        headers[name] = data.draw(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
            label="random",
        )
    elif how == "garbled":
        headers[name] = garbled(real, data, BASE64_ALPHABET)
    elif how == "truncated":
        headers[name] = real[: data.draw(st.integers(1, len(real) - 1), label="kept")]
    elif how == "wrong-token":
        token = data.draw(
            st.text(BASE64_ALPHABET[:62], min_size=20, max_size=40).filter(
                lambda t: t != PLIVO_TOKEN
            ),
            label="token",
        )
        headers[name] = signature(token=token)
    elif how == "other-nonce":
        headers[nonce_name] = data.draw(
            st.from_regex(r"[0-9]{1,20}", fullmatch=True).filter(lambda n: n != nonce),
            label="nonce",
        )
    elif how == "other-url":
        headers[name] = signature(url=_other_url(genuine.url, data, version))
    elif how == "other-body":
        headers[name] = signature(body=_other_body(genuine.body, data))
    elif how == "spoofed-host":
        other = data.draw(
            st.sampled_from(["other-app.example.org", "evil.test"]), label="other host"
        )
        headers[name] = signature(url=urlunsplit(("https", other, *urlsplit(genuine.url)[2:])))
        meta = {"HTTP_HOST": other, "HTTP_X_FORWARDED_HOST": other}
    else:
        headers[name] = f"{garbled(real, data, BASE64_ALPHABET)},{real[::-1]}"
    if headers.get(name) and headers.get(nonce_name):
        # A change Plivo's own signing cannot tell apart is no forgery.
        assume(
            real not in [part.strip() for part in headers[name].split(",")]
            or headers[nonce_name] != nonce
        )
        if version == 2:
            # V2 compares the decoded digest: a Base64 spelling of the same bytes (the spare
            # low bits of the last character) is the same signature.
            honest = v2_sign(genuine.url, headers[nonce_name])
            assume(_v2_digest(headers[name]) != _v2_digest(honest))
    return Delivery(genuine.label, genuine.url, genuine.body, genuine.content_type, headers), meta


@FUZZ
@given(data=st.data())
def test_forged_requests_are_401_and_change_nothing(
    plivo: PlivoDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the V3 and V2 checks: only Plivo, with our auth token, over our URL (and,
    for V3, this body) with this nonce, can move a call, create one or leave a replay key."""
    with isolated():
        client = Client()
        version = data.draw(st.sampled_from([3, 3, 2]), label="version")
        genuine, calls = genuine_situation(data, make_call, version)
        forged, meta = forge(genuine, version, data)
        before = Snapshot.take(*calls)

        response = send(client, forged, **meta)

        assert response.status_code == 401, describe(response)
        assert (changes := before.diff(Snapshot.take(*calls))) == [], changes
        # The control: the genuine request is accepted and does something.
        accepted = send(client, genuine)
        assert accepted.status_code == 200, describe(accepted)
        assert Counts.now() != before.counts


@FUZZ
@given(data=st.data())
def test_structurally_bad_requests_are_refused_and_change_nothing(
    plivo: PlivoDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the gates in front of verification: a validly signed request on a look-alike
    path (404), with another method (405) or a body over 64 KiB (413) does nothing."""
    with isolated():
        client = Client()
        version = data.draw(st.sampled_from([3, 2]), label="version")
        genuine, calls = genuine_situation(data, make_call, version)
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
            parts = urlsplit(genuine.url)
            delivery = signed(
                urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")),
                genuine.body,
                version=version,
            )
        elif how == "method":
            method = data.draw(
                st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"]), label="method"
            )
            expected = 405
        else:
            size = data.draw(st.integers(BODY_LIMIT + 1, 3 * BODY_LIMIT), label="size")
            body = genuine.body + b"&Padding=" + b"x" * (size - len(genuine.body) - 9)
            assert len(body) == size
            delivery, expected = signed(genuine.url, body, version=version), 413
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
    "text/plain",
    "",
    "multipart/form-data; boundary=zzz",
    "application/xml",
]
FIELDS = [
    "CallUUID",
    "RequestUUID",
    "ALegUUID",
    "CallStatus",
    "Event",
    "Direction",
    "From",
    "To",
    "Digits",
    "Speech",
    "Transcription",
    "TranscriptionText",
    "SpeechResult",
    "RecognizedSpeech",
    "Text",
    "SpeechConfidenceScore",
    "HangupCause",
    "Duration",
    "BillDuration",
    "InputType",
    "CallerName",
]


def _values(field: str, live: Call, done: Call) -> st.SearchStrategy[str]:
    """Values for one Plivo field: plausible ones twice as likely as hostile or huge ones."""
    ids = [
        live.provider_call_id or "",
        done.provider_call_id or "",
        str(uuid.uuid4()),
        " ",
        "7" * 500,
        (live.provider_call_id or "") + "\x00",
    ]
    plausible: dict[str, list[str]] = {
        "CallUUID": ids,
        "RequestUUID": ids,
        "ALegUUID": ids,
        "CallStatus": STATUSES + ["", "exploded", "COMPLETED", " in-progress "],
        "Event": ["StartApp", "Hangup", "Redirect", "", "startapp"],
        "Direction": ["inbound", "outbound", "", "sideways"],
        "From": [
            plivo_digits(FRIEND),
            plivo_digits(STRANGER),
            FRIEND,
            "9" * 60,
            plivo_digits(LONG_NUMBER),
            "<script>",
            "sip:alice@example.org",
            "(555) 555-0111",
        ],
        "To": [plivo_digits(OUR_NUMBER), plivo_digits(CALLEE), "", LONG_NUMBER],
        "SpeechConfidenceScore": ["nan", "inf", "1e999", "-1", "0.5", "2", "x"],
        "Digits": ["1", "123#", "w", "*"],
        "Speech": ["yes please", "", " "],
    }
    likely = st.sampled_from(plausible.get(field, ["", "x"]))
    return st.one_of(likely, likely, nasty_text(), huge_text())


def _poisoned(value: str, data: st.DataObject) -> str:
    """`value` with a control character slipped in somewhere."""
    at = data.draw(st.integers(0, len(value)), label="at")
    return value[:at] + data.draw(st.sampled_from(CONTROL_CHARS), label="control") + value[at:]


def _query(data: st.DataObject, live: Call, done: Call, version: int) -> list[tuple[str, str]]:
    """A hostile query; for V3 it stays ASCII (the SDK signs other query text as Latin-1,
    see providers/plivo/signature.py), V2 does not sign it at all."""

    def nasty(max_size: int = 30) -> st.SearchStrategy[str]:
        return nasty_text(max_size=max_size, ascii=version == 3)

    options: dict[str, st.SearchStrategy[str]] = {
        "callId": st.one_of(
            st.sampled_from(
                [
                    live.call_id,
                    live.call_id,
                    done.call_id,
                    str(uuid.uuid4()),
                    "not-a-uuid",
                    "x" * 300,
                ]
            ),
            nasty(),
        ),
        "flow": st.one_of(st.sampled_from(FLOWS + FLOWS + ["", "GETINPUT"]), nasty()),
        "turnToken": st.one_of(st.sampled_from([live.turn_token or "", uuid.uuid4().hex]), nasty()),
    }
    pairs = [
        (name, data.draw(options[name], label=f"query {name}"))
        for name in data.draw(
            st.lists(st.sampled_from(sorted(options)), max_size=4), label="query names"
        )
    ]
    pairs += data.draw(st.lists(st.tuples(nasty(8), nasty(8)), max_size=2), label="odd query pairs")
    return pairs


def malformed_request(data: st.DataObject, live: Call, done: Call) -> Delivery:
    """A validly signed request (V3 or V2) with a hostile query and body."""
    version = data.draw(st.sampled_from([3, 3, 2]), label="version")
    url = url_for(
        _query(data, live, done, version),
        path=data.draw(st.sampled_from(["/voice/webhook", "/voice/webhook/"])),
    )
    content_type = data.draw(
        st.one_of(st.just(FORM), st.just(FORM), st.sampled_from(CONTENT_TYPES)),
        label="content type",
    )
    shape = data.draw(st.sampled_from(["form"] * 6 + ["json", "raw"]), label="shape")
    if shape == "raw":
        body = data.draw(
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(
                    [
                        b"",
                        b"=&=&&&==",
                        b"CallUUID=%ZZ&%00=%ff",
                        b"\xff\xfe",
                        b"[" * 5000,
                        b"CallUUID=%ED%A0%80&CallStatus=ringing",
                        b"CallUUID=a&CallUUID=b&CallStatus=completed",
                        b"CallUUID=" + (live.provider_call_id or "").encode() + b"&Speech=%C0%80",
                    ]
                ),
            ),
            label="raw body",
        )
        return signed(url, body, version=version, content_type=content_type)
    extras = st.lists(st.one_of(st.sampled_from(FIELDS), nasty_text(max_size=10)), max_size=6)
    names = [
        *data.draw(
            st.sampled_from(
                [
                    ("CallUUID", "CallStatus"),
                    ("CallUUID", "CallStatus", "Event", "Direction"),
                    ("CallUUID", "Direction", "From", "To", "Event"),
                    ("CallUUID", "Speech"),
                    ("RequestUUID", "CallStatus"),
                    ("CallUUID", "Digits"),
                    (),
                ]
            ),
            label="callback fields",
        ),
        *data.draw(extras, label="extra fields"),
    ]
    pairs = [(name, data.draw(_values(name, live, done), label=name)) for name in names]
    for _ in range(data.draw(st.integers(0, 2), label="poisoned")):
        if pairs:
            index = data.draw(st.integers(0, len(pairs) - 1), label="poison which")
            pairs[index] = (pairs[index][0], _poisoned(pairs[index][1], data))
    if pairs and data.draw(st.booleans(), label="duplicate a key"):
        name = pairs[0][0]
        pairs.append((name, data.draw(_values(name, live, done), label=f"{name} again")))
    if shape == "json":
        body = json.dumps(dict(pairs)).encode()
        content_type = "application/json"
    else:
        body = urlencode(pairs).encode()
    return signed(url, body, version=version, content_type=content_type)


@FUZZ
@given(data=st.data())
def test_malformed_signed_requests_never_5xx_and_4xx_changes_nothing(
    plivo: PlivoDriver, make_call: Any, data: st.DataObject
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
            provider="plivo",
            provider_call_id=str(uuid.uuid4()),
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
CONFIDENCES = ["0.8", "0.8", "nan", "inf", "-inf", "1e999", "-1", "2", "x", ""]


def sequence_step(
    data: st.DataObject, call: Call, request_uuid: str, call_uuid: str, token: str
) -> tuple[Delivery, bool]:
    """One genuine callback for `call`, as Plivo sends them (V3 or V2), and whether it
    carries words that must become a transcript line while the call is live."""
    heard = False
    version = data.draw(st.sampled_from([3, 3, 2]), label="version")
    kind = data.draw(
        st.sampled_from(["answer", "status", "speech", "digits", "silence", "hangup", "fetch"]),
        label="step",
    )
    if kind == "answer":
        params = call_params(
            call, call_uuid, RequestUUID=request_uuid, CallStatus="in-progress", Event="StartApp"
        )
        url = url_for([("callId", call.call_id), ("flow", "answer")])
    elif kind == "status":
        params = call_params(
            call,
            call_uuid,
            CallStatus=data.draw(st.sampled_from(["ringing", "in-progress"]), label="status"),
        )
        url = url_for([("callId", call.call_id)])
    elif kind == "hangup":
        uuid_now = data.draw(st.sampled_from([call_uuid, request_uuid]), label="which uuid")
        params = call_params(
            call,
            uuid_now,
            CallStatus=data.draw(st.sampled_from(ENDING), label="end"),
            Event="Hangup",
            HangupCause="NORMAL_CLEARING",
            Duration="7",
        )
        url = url_for([("callId", call.call_id), ("flow", "hangup")])
    elif kind == "fetch":
        params = call_params(call, call_uuid, CallStatus="in-progress")
        flow = data.draw(st.sampled_from(["xml-speak", "xml-listen"]), label="flow")
        url = url_for([("callId", call.call_id), ("flow", flow), ("turnToken", token)])
    else:
        turn = data.draw(st.sampled_from([token, uuid.uuid4().hex, None]), label="turn")
        fields = {"CallStatus": "in-progress"}
        if kind == "speech":
            clean = data.draw(st.booleans(), label="clean words")
            fields.update(
                Speech=data.draw(WORDS if clean else nasty_text(min_size=1), label="words"),
                SpeechConfidenceScore=data.draw(st.sampled_from(CONFIDENCES), label="conf"),
                InputType="speech",
            )
            heard = clean and turn in (token, None)
        elif kind == "digits":
            fields["Digits"] = data.draw(
                st.from_regex(r"[0-9*#]{1,6}", fullmatch=True), label="digits"
            )
        params = call_params(call, call_uuid, **fields)
        url = url_for(
            [("callId", call.call_id), ("flow", "getinput")]
            + ([("turnToken", turn)] if turn else [])
        )
    return signed(url, urlencode(params).encode(), version=version), heard


def user_lines(call: Call) -> int:
    return TranscriptEntry.objects.filter(call=call, speaker="user").count()


@FUZZ
@given(data=st.data())
def test_sequences_of_genuine_callbacks_only_move_forward(
    plivo: PlivoDriver, make_call: Any, data: st.DataObject
) -> None:
    """Protects the state machine, the request-UUID upgrade and replay detection under
    Plivo's real behaviour: callbacks in any order, some delivered twice; and the caller's
    words, whatever confidence comes with them, are kept while the call is live."""
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
        request_uuid, call_uuid = call.provider_call_id or "", str(uuid.uuid4())
        sent: list[Delivery] = []
        for index in range(data.draw(st.integers(1, 12), label="steps")):
            resend, heard = bool(sent) and data.draw(st.booleans(), label="resend"), False
            if resend:
                delivery = data.draw(st.sampled_from(sent), label="again")
            else:
                delivery, heard = sequence_step(data, call, request_uuid, call_uuid, token)
                sent.append(delivery)
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
            elif heard:
                assert user_lines(call) == lines + 1, ("words lost", step)
            if resend:
                assert after.counts.events == before.counts.events, step
                assert after.counts.transcript == before.counts.transcript, step
                assert after.rows[call.pk]["state"] == before.rows[call.pk]["state"], step
            assert (problems := stored_text_problems()) == [], (step, problems)
