"""Carrier drivers: each one plays one carrier against the whole service.

A driver knows the carrier's config block (fake credentials), builds the real adapter on a
fake REST API (an `httpx.MockTransport` handler that records every request and answers as
the carrier would), and produces the *signed* webhook requests the carrier sends in a
normalized situation (ringing, answered, speech, hang-up, inbound call, …). The webhook
URLs come from what the adapter actually handed the carrier (the create request, the
TwiML/XML it sent or replied with), exactly as the real carrier would use them.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client
from plivo.utils import signature_v3
from twilio.request_validator import RequestValidator

from calls import clock
from calls.carrier import provider_settings
from calls.config import VoiceCallConfig
from calls.models import Call
from providers.base import TelephonyProvider

PUBLIC_HOST = "voice.example.test"
PUBLIC_URL = f"https://{PUBLIC_HOST}/voice/webhook"
OUR_NUMBER = "+15550100000"
CALLEE = "+15555550123"
FRIEND = "+15555550111"  # allowlisted caller
STRANGER = "+15555550999"  # not allowlisted
GREETING = "Hello friend, this is the voice desk."


@dataclass(frozen=True)
class Delivery:
    """One HTTP request a carrier makes to our webhook."""

    label: str
    url: str  # the full URL the carrier requested (the one it signed, for URL-signing carriers)
    body: bytes
    content_type: str
    headers: dict[str, str]  # HTTP header name -> value

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def meta(self) -> dict[str, str]:
        """Headers as Django test-client META keys; Host is the public host by default."""
        meta = {"HTTP_HOST": urlsplit(self.url).netloc}
        for name, value in self.headers.items():
            meta["HTTP_" + name.upper().replace("-", "_")] = value
        return meta


@dataclass
class Exchange:
    delivery: Delivery
    status: int
    body: bytes


@dataclass
class FakeApi:
    """The carrier's REST API: records every request, answers with `respond`."""

    respond: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


class CarrierDriver:
    """What every carrier driver offers the flow tests."""

    name = ""
    #: A rejected inbound caller is refused by the webhook reply itself (no REST hang-up).
    rejects_in_reply = False
    #: The notify message travels with the dial request and the carrier hangs up by itself.
    notify_hangs_up_itself = False
    #: Where a notify message is spoken (the `where` of spoken()).
    notify_channel = ""

    def __init__(self) -> None:
        self.api = FakeApi(self._answer)
        self.exchanges: list[Exchange] = []
        # provider call id -> "in-progress" | "completed" | "not-found" | "error"
        self.status_answers: dict[str, str] = {}
        self._sequence = itertools.count()

    # -- set-up ---------------------------------------------------------------------------
    def config(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "provider": self.name,
            "fromNumber": OUR_NUMBER,
            "publicUrl": PUBLIC_URL,
            "inboundPolicy": "allowlist",
            "allowFrom": [FRIEND],
            "inboundGreeting": GREETING,
            "maxConcurrentCalls": 10,
            "staleCallReaperSeconds": 0,
            # A broken flow fails in seconds instead of waiting out the 180 s default.
            "transcriptTimeoutMs": 15000,
            self.name: self.credentials(),
        }
        base.update(overrides)
        return base

    def credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def adapter(self, cfg: VoiceCallConfig) -> TelephonyProvider:
        """The real adapter, built from the runtime's settings, on the fake API."""
        raise NotImplementedError

    def settings(self, cfg: VoiceCallConfig) -> dict[str, Any]:
        return provider_settings(cfg)

    # -- the fake REST API ------------------------------------------------------------------
    def _answer(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def new_provider_call_id(self) -> str:
        raise NotImplementedError

    # -- situations -> signed webhook deliveries --------------------------------------------
    def initiated(self, call: Call) -> list[Delivery]:
        return []

    def ringing(self, call: Call) -> list[Delivery]:
        raise NotImplementedError

    def answered(self, call: Call) -> list[Delivery]:
        raise NotImplementedError

    def speech(self, call: Call, text: str, turn_token: str | None) -> list[Delivery]:
        """The caller's words answering the listening of `turn_token`; None = the listening
        the greeting started (no turn)."""
        raise NotImplementedError

    def hangup(self, call: Call, status: str = "completed") -> list[Delivery]:
        raise NotImplementedError

    def inbound(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        raise NotImplementedError

    def inbound_again(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        """A second, different callback for the same inbound call."""
        raise NotImplementedError

    def status_for_unknown(self, kind: str) -> list[Delivery]:
        """A status callback for a call we do not know. kind: "no-direction" (no direction
        given), "our-call-id" (an outbound call under a callId of ours that does not exist),
        "inbound-ended" (the end of an inbound call from an allowlisted caller we never saw)."""
        raise NotImplementedError

    def oversized_call_id(self) -> list[Delivery]:
        """A validly signed first callback of an inbound call whose carrier call id is 500
        characters long."""
        raise NotImplementedError

    def deep_json(self) -> list[Delivery]:
        """A validly signed JSON body nested deeper than Python's parser recursion limit;
        [] for carriers whose callbacks are never parsed as JSON."""
        return []

    def follow_up(self, client: Client) -> None:
        """What the carrier does by itself after our REST commands (Plivo fetches the
        document a transfer points to); nothing for most carriers."""

    def malformed(self) -> list[Delivery]:
        """Validly signed requests whose body is not a usable carrier callback (-> 400)."""
        raise NotImplementedError

    def garbage(self) -> list[Delivery]:
        """Validly signed oddities; none may produce a 500."""
        raise NotImplementedError

    # -- observations ------------------------------------------------------------------------
    def spoken(self) -> list[tuple[str, str]]:
        """(where, text) for every text sent to be spoken: REST commands and webhook replies."""
        raise NotImplementedError

    def hangup_requests(self) -> list[httpx.Request]:
        raise NotImplementedError

    def prompt_sent(self, call: Call, text: str, turn_token: str) -> bool:
        """The turn's prompt went to the carrier together with its listening command."""
        raise NotImplementedError

    def inbound_answered(self, call: Call) -> list[Delivery]:
        """What the carrier sends after our reply to an accepted inbound call's first webhook."""
        raise NotImplementedError

    def greeted(self, call: Call, greeting: str) -> bool:
        """The accepted inbound call was answered and greeted the carrier's way."""
        raise NotImplementedError

    def rejected_in_reply(self, exchange: Exchange) -> bool:
        return False

    def is_empty_reply(self, exchange: Exchange) -> bool:
        raise NotImplementedError

    def status_requests(self) -> list[str]:
        """Provider call ids the adapter asked the carrier's status of."""
        raise NotImplementedError

    # -- delivery ------------------------------------------------------------------------------
    def post(self, client: Client, delivery: Delivery, **meta: Any) -> Any:
        headers = {**delivery.meta(), **meta}
        response = client.generic(
            "POST",
            delivery.path,
            delivery.body,
            content_type=delivery.content_type,
            secure=delivery.url.startswith("https:"),
            **headers,
        )
        self.exchanges.append(Exchange(delivery, response.status_code, response.content))
        return response

    def post_all(self, client: Client, deliveries: Iterable[Delivery]) -> list[Any]:
        return [self.post(client, delivery) for delivery in deliveries]

    def timestamp(self) -> str:
        return format_datetime(clock.now())


# == Twilio =====================================================================================

TWILIO_ACCOUNT = "AC" + "5" * 32
TWILIO_TOKEN = "f" * 32  # a fake auth token


class TwilioParams(dict[str, list[str]]):
    """Form fields in the shape RequestValidator reads (it calls getlist())."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


def twilio_sign(url: str, body: bytes, token: str = TWILIO_TOKEN) -> str:
    """X-Twilio-Signature for a form body posted to `url`, as Twilio computes it."""
    params = TwilioParams(parse_qs(body.decode("utf-8"), keep_blank_values=True))
    return str(RequestValidator(token).compute_signature(url, params))


def twiml_says(document: str) -> list[str]:
    return [el.text or "" for el in ET.fromstring(document).iter("Say")]


def twiml_gather_actions(document: str) -> list[str]:
    return [el.get("action", "") for el in ET.fromstring(document).iter("Gather")]


class TwilioDriver(CarrierDriver):
    name = "twilio"
    rejects_in_reply = True
    notify_hangs_up_itself = True
    notify_channel = "create"  # inline TwiML of the create request

    def __init__(self) -> None:
        super().__init__()
        self.creates: dict[str, dict[str, list[str]]] = {}  # CallSid -> create form

    def credentials(self) -> dict[str, Any]:
        return {"accountSid": TWILIO_ACCOUNT, "authToken": TWILIO_TOKEN}

    def adapter(self, cfg: VoiceCallConfig) -> TelephonyProvider:
        from providers.twilio import TwilioProvider

        return TwilioProvider(
            settings=self.settings(cfg), http=self.api.client(), sleep=lambda seconds: None
        )

    # -- fake REST API ----------------------------------------------------------------------
    def new_provider_call_id(self) -> str:
        return "CA" + uuid.uuid4().hex

    def _answer(self, request: httpx.Request) -> httpx.Response:
        prefix = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Calls"
        path = request.url.path
        form = parse_qs(request.content.decode(), keep_blank_values=True)
        if request.method == "POST" and path == prefix + ".json":
            sid = self.new_provider_call_id()
            self.creates[sid] = form
            return httpx.Response(
                201, json={"sid": sid, "status": "queued", "direction": "outbound-api"}
            )
        if path.startswith(prefix + "/") and path.endswith(".json"):
            sid = path[len(prefix) + 1 : -len(".json")]
            if request.method == "POST":
                status = "completed" if form.get("Status") == ["completed"] else "in-progress"
                return httpx.Response(200, json={"sid": sid, "status": status})
            answer = self.status_answers.get(sid, "in-progress")
            if answer == "not-found":
                return httpx.Response(
                    404,
                    json={
                        "code": 20404,
                        "status": 404,
                        "message": f"The requested resource {path} was not found",
                    },
                )
            if answer == "error":
                return httpx.Response(
                    500, json={"code": 20500, "status": 500, "message": "Internal Server Error"}
                )
            return httpx.Response(200, json={"sid": sid, "status": answer})
        return httpx.Response(404, json={"code": 20404, "status": 404, "message": "no route"})

    def rest_twimls(self) -> list[tuple[str, str]]:
        """(create|update, TwiML) for every TwiML document sent over REST."""
        found = []
        for request in self.api.requests:
            if request.method != "POST":
                continue
            form = parse_qs(request.content.decode(), keep_blank_values=True)
            for document in form.get("Twiml", []):
                kind = "create" if request.url.path.endswith("/Calls.json") else "update"
                found.append((kind, document))
        return found

    def reply_twimls(self) -> list[str]:
        return [
            e.body.decode()
            for e in self.exchanges
            if e.status == 200 and e.body.lstrip().startswith(b"<?xml")
        ]

    # -- deliveries -------------------------------------------------------------------------
    def signed(
        self, label: str, url: str, params: dict[str, str], headers: dict[str, str] | None = None
    ) -> Delivery:
        body = urlencode(params).encode()
        return Delivery(
            label=label,
            url=url,
            body=body,
            content_type="application/x-www-form-urlencoded",
            headers={
                "X-Twilio-Signature": twilio_sign(url, body),
                "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
                **(headers or {}),
            },
        )

    def signed_raw(
        self,
        label: str,
        url: str,
        body: bytes,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> Delivery:
        return Delivery(
            label=label,
            url=url,
            body=body,
            content_type=content_type,
            headers={"X-Twilio-Signature": twilio_sign(url, body)},
        )

    def _params(
        self, call_sid: str, *, direction: str, from_: str, to: str, **fields: str
    ) -> dict[str, str]:
        params = {
            "AccountSid": TWILIO_ACCOUNT,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "Direction": direction,
            "From": from_,
            "To": to,
        }
        params.update(fields)
        return params

    def _call_params(self, call: Call, **fields: str) -> dict[str, str]:
        assert call.provider_call_id, "the call was never dialled"
        inbound = call.direction == Call.Direction.INBOUND
        return self._params(
            call.provider_call_id,
            direction="inbound" if inbound else "outbound-api",
            from_=call.from_number,
            to=call.to_number,
            **fields,
        )

    def _create(self, call: Call) -> dict[str, list[str]]:
        return self.creates.get(call.provider_call_id or "", {})

    def status_url(self, call: Call) -> str:
        """The StatusCallback the adapter gave at dial time; for inbound calls, the one the
        operator set on the number (the webhook with type=status)."""
        return self._create(call).get("StatusCallback", [f"{PUBLIC_URL}?type=status"])[0]

    def voice_url(self, call: Call) -> str | None:
        """The TwiML URL Twilio fetches on answer; None when the TwiML went inline."""
        return self._create(call).get("Url", [None])[0]

    def _status(self, call: Call, status: str, **fields: str) -> Delivery:
        params = self._call_params(
            call,
            CallStatus=status,
            CallbackSource="call-progress-events",
            SequenceNumber=str(next(self._sequence)),
            Timestamp=self.timestamp(),
            **fields,
        )
        return self.signed(f"status:{status}", self.status_url(call), params)

    def initiated(self, call: Call) -> list[Delivery]:
        return [self._status(call, "initiated")]

    def ringing(self, call: Call) -> list[Delivery]:
        return [self._status(call, "ringing")]

    def answered(self, call: Call) -> list[Delivery]:
        deliveries = []
        url = self.voice_url(call)
        if url:
            deliveries.append(
                self.signed("fetch:answer", url, self._call_params(call, CallStatus="in-progress"))
            )
        deliveries.append(self._status(call, "in-progress"))
        return deliveries

    def gather_action(self, turn_token: str | None) -> str:
        """The newest Gather action we were given for this turn (REST or reply TwiML)."""
        documents = [doc for _, doc in self.rest_twimls()] + self.reply_twimls()
        actions = [a for doc in documents for a in twiml_gather_actions(doc)]
        actions = [
            a
            for a in actions
            if parse_qs(urlsplit(a).query).get("turnToken")
            == ([turn_token] if turn_token else None)
        ]
        assert actions, f"no <Gather> action for turn {turn_token!r} was sent to Twilio"
        return actions[-1]

    def speech(self, call: Call, text: str, turn_token: str | None) -> list[Delivery]:
        params = self._call_params(
            call, CallStatus="in-progress", SpeechResult=text, Confidence="0.93", Language="en-US"
        )
        return [self.signed("gather:speech", self.gather_action(turn_token), params)]

    def hangup(self, call: Call, status: str = "completed") -> list[Delivery]:
        return [self._status(call, status, CallDuration="7")]

    def inbound(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        # The number's Voice URL is the public webhook, as the operator configured it.
        params = self._params(
            call_sid,
            direction="inbound",
            from_=from_,
            to=to,
            CallStatus="ringing",
            CallerName="",
            FromCountry="US",
        )
        return [self.signed("inbound", PUBLIC_URL, params)]

    def inbound_again(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        # Twilio re-requesting the Voice URL with a slightly different body, then the
        # number's status callback for the refused call.
        refetch = self._params(
            call_sid,
            direction="inbound",
            from_=from_,
            to=to,
            CallStatus="ringing",
            StirVerstat="TN-Validation-Passed-A",
        )
        status = self._params(
            call_sid,
            direction="inbound",
            from_=from_,
            to=to,
            CallStatus="busy",
            CallbackSource="call-progress-events",
            SequenceNumber="1",
        )
        return [
            self.signed("inbound:refetch", PUBLIC_URL, refetch),
            self.signed("inbound:status", f"{PUBLIC_URL}?type=status", status),
        ]

    def status_for_unknown(self, kind: str) -> list[Delivery]:
        sid = self.new_provider_call_id()
        progress = {"CallbackSource": "call-progress-events", "SequenceNumber": "3"}
        if kind == "no-direction":
            params = {
                "AccountSid": TWILIO_ACCOUNT,
                "CallSid": sid,
                "CallStatus": "ringing",
                **progress,
            }
            return [self.signed("status:unknown", f"{PUBLIC_URL}?type=status", params)]
        if kind == "our-call-id":
            url = f"{PUBLIC_URL}?callId={uuid.uuid4()}&type=status"
            params = self._params(
                sid,
                direction="outbound-api",
                from_=OUR_NUMBER,
                to=CALLEE,
                CallStatus="completed",
                CallDuration="9",
                **progress,
            )
            return [self.signed("status:unknown", url, params)]
        assert kind == "inbound-ended"
        # The number's status callback, e.g. after our answer webhook was unreachable.
        params = self._params(
            sid,
            direction="inbound",
            from_=FRIEND,
            to=OUR_NUMBER,
            CallStatus="completed",
            CallDuration="0",
            **progress,
        )
        return [self.signed("status:unknown", f"{PUBLIC_URL}?type=status", params)]

    def oversized_call_id(self) -> list[Delivery]:
        params = self._params(
            "CA" + "7" * 498,
            direction="inbound",
            from_=STRANGER,
            to=OUR_NUMBER,
            CallStatus="ringing",
        )
        return [self.signed("inbound:oversized", PUBLIC_URL, params)]

    def deep_json(self) -> list[Delivery]:
        return [
            self.signed_raw(
                "deep-json", f"{PUBLIC_URL}?type=status", b"[" * 50000, "application/json"
            )
        ]

    def malformed(self) -> list[Delivery]:
        url = f"{PUBLIC_URL}?type=status"
        return [
            self.signed_raw(
                "no-callsid", url, b"CallStatus=ringing&AccountSid=" + TWILIO_ACCOUNT.encode()
            ),
            self.signed_raw("blank-callsid", url, b"CallSid=+++&CallStatus=ringing"),
            self.signed_raw("json-array", url, b"[1, 2, 3]", "application/json"),
            self.signed_raw("json-broken", url, b'{"CallSid": "CA1"', "application/json"),
        ]

    def garbage(self) -> list[Delivery]:
        sid = self.new_provider_call_id()
        url = f"{PUBLIC_URL}?callId=not-a-uuid&flow=gather&turnToken=x"
        return [
            self.signed_raw("empty", PUBLIC_URL, b""),
            self.signed_raw("words", PUBLIC_URL, b"this is not a form"),
            self.signed_raw("separators", PUBLIC_URL, b"=&=&&&=="),
            self.signed_raw(
                "odd-status",
                f"{PUBLIC_URL}?type=status",
                f"CallSid={sid}&CallStatus=exploded&Direction=sideways".encode(),
            ),
            self.signed_raw(
                "odd-fields",
                url,
                (
                    f"CallSid={sid}&Confidence=nan&Timestamp=yesterday&SequenceNumber=-1"
                    "&SpeechResult=%20%20&Digits=&CallStatus=in-progress"
                ).encode(),
            ),
            self.signed_raw(
                "odd-inbound",
                PUBLIC_URL,
                urlencode(
                    {
                        "CallSid": sid,
                        "Direction": "inbound",
                        "From": "+" + "9" * 60,
                        "To": "<script>",
                        "CallStatus": "ringing",
                        "Confidence": "1e999",
                    }
                ).encode(),
            ),
            self.signed_raw(
                "json-object",
                f"{PUBLIC_URL}?type=status",
                b'{"CallSid": {"nested": 1}, "CallStatus": ["x"]}',
                "application/json",
            ),
        ]

    # -- observations -----------------------------------------------------------------------
    def spoken(self) -> list[tuple[str, str]]:
        found = [(kind, text) for kind, doc in self.rest_twimls() for text in twiml_says(doc)]
        found += [("reply", text) for doc in self.reply_twimls() for text in twiml_says(doc)]
        return found

    def hangup_requests(self) -> list[httpx.Request]:
        return [
            r
            for r in self.api.requests
            if r.method == "POST" and parse_qs(r.content.decode()).get("Status") == ["completed"]
        ]

    def prompt_sent(self, call: Call, text: str, turn_token: str) -> bool:
        for kind, document in self.rest_twimls():
            if kind != "update" or text not in twiml_says(document):
                continue
            for action in twiml_gather_actions(document):
                query = parse_qs(urlsplit(action).query)
                if query.get("turnToken") == [turn_token] and query.get("callId") == [call.call_id]:
                    return True
        return False

    def inbound_answered(self, call: Call) -> list[Delivery]:
        return []  # the TwiML reply to the first webhook answers the call

    def greeted(self, call: Call, greeting: str) -> bool:
        """The reply to the first webhook says the greeting and listens (a <Gather>)."""
        first = next(e for e in self.exchanges if e.delivery.label == "inbound")
        document = first.body.decode()
        return (
            first.status == 200
            and twiml_says(document) == [greeting]
            and len(twiml_gather_actions(document)) == 1
        )

    def rejected_in_reply(self, exchange: Exchange) -> bool:
        root = ET.fromstring(exchange.body.decode())
        return [child.tag for child in root] == ["Reject"]

    def is_empty_reply(self, exchange: Exchange) -> bool:
        root = ET.fromstring(exchange.body.decode())
        return root.tag == "Response" and len(root) == 0 and not (root.text or "").strip()

    def status_requests(self) -> list[str]:
        prefix = f"/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Calls/"
        return [
            r.url.path[len(prefix) : -len(".json")]
            for r in self.api.requests
            if r.method == "GET" and r.url.path.startswith(prefix)
        ]


# == Telnyx =====================================================================================

TELNYX_API_KEY = "KEYFAKE0000000000000000_test"
TELNYX_CONNECTION = "1234567890123456789"
# Telnyx's cause for each of our end states, as its call.hangup webhook says it.
TELNYX_CAUSES = {
    "completed": "normal_clearing",
    "busy": "user_busy",
    "no-answer": "timeout",
    "failed": "destination_out_of_order",
    "hangup-user": "user_hangup",
}


class TelnyxDriver(CarrierDriver):
    name = "telnyx"
    notify_channel = "speak"  # a speak command once call.answered arrives

    def __init__(self) -> None:
        super().__init__()
        self.key = Ed25519PrivateKey.generate()
        self.dials: dict[str, dict[str, Any]] = {}  # call_control_id -> dial body

    def credentials(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "apiKey": TELNYX_API_KEY,
            "connectionId": TELNYX_CONNECTION,
            "publicKey": base64.b64encode(raw).decode(),
        }

    def adapter(self, cfg: VoiceCallConfig) -> TelephonyProvider:
        from providers.telnyx import TelnyxProvider

        return TelnyxProvider(settings=self.settings(cfg), http=self.api.client())

    # -- fake REST API ----------------------------------------------------------------------
    def new_provider_call_id(self) -> str:
        return f"v3:{uuid.uuid4().hex}"

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        if request.method == "POST" and path == "/v2/calls":
            control_id = self.new_provider_call_id()
            self.dials[control_id] = json.loads(request.content)
            return httpx.Response(
                200,
                json={
                    "data": {
                        "call_control_id": control_id,
                        "call_leg_id": str(uuid.uuid4()),
                        "call_session_id": str(uuid.uuid4()),
                        "is_alive": False,
                        "record_type": "call",
                    }
                },
            )
        if request.method == "POST" and "/actions/" in path:
            return httpx.Response(200, json={"data": {"result": "ok"}})
        if request.method == "GET" and path.startswith("/v2/calls/"):
            control_id = path[len("/v2/calls/") :]
            answer = self.status_answers.get(control_id, "in-progress")
            if answer == "not-found":
                return httpx.Response(
                    404,
                    json={
                        "errors": [
                            {"code": "90015", "title": "Call not found", "detail": "no such call"}
                        ]
                    },
                )
            if answer == "error":
                return httpx.Response(
                    500, json={"errors": [{"code": "10007", "title": "Unexpected error"}]}
                )
            return httpx.Response(
                200,
                json={
                    "data": {
                        "call_control_id": control_id,
                        "is_alive": answer == "in-progress",
                        "record_type": "call",
                    }
                },
            )
        return httpx.Response(404, json={"errors": [{"code": "10005", "title": "Not found"}]})

    def commands(self, control_id: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """(call_control_id, action, body) of every Call Control command, in order."""
        found = []
        for request in self.api.requests:
            path = unquote(request.url.path)
            if request.method != "POST" or "/actions/" not in path:
                continue
            leg, action = path[len("/v2/calls/") :].split("/actions/")
            if control_id is None or leg == control_id:
                found.append((leg, action, json.loads(request.content)))
        return found

    def client_states(self, call: Call) -> list[str]:
        """client_state values handed to Telnyx for the call's leg, oldest first."""
        control_id = call.provider_call_id or ""
        states = [self.dials[control_id]["client_state"]] if control_id in self.dials else []
        states += [
            body["client_state"]
            for _, _, body in self.commands(control_id)
            if body.get("client_state")
        ]
        return states

    # -- deliveries -------------------------------------------------------------------------
    def signed_raw(self, label: str, url: str, body: bytes) -> Delivery:
        timestamp = str(int(time.time()))
        signature = base64.b64encode(self.key.sign(timestamp.encode() + b"|" + body)).decode()
        return Delivery(
            label=label,
            url=url,
            body=body,
            content_type="application/json",
            headers={"telnyx-signature-ed25519": signature, "telnyx-timestamp": timestamp},
        )

    def event(
        self,
        label: str,
        url: str,
        event_type: str,
        payload: dict[str, Any],
        *,
        event_id: str | None = None,
        attempt: int = 1,
    ) -> Delivery:
        document = {
            "data": {
                "record_type": "event",
                "event_type": event_type,
                "id": event_id or str(uuid.uuid4()),
                "occurred_at": clock.now().isoformat().replace("+00:00", "Z"),
                "payload": payload,
            },
            "meta": {"attempt": attempt, "delivered_to": url},
        }
        return self.signed_raw(label, url, json.dumps(document).encode())

    def _url(self, call: Call) -> str:
        dial = self.dials.get(call.provider_call_id or "")
        return dial["webhook_url"] if dial else PUBLIC_URL  # inbound: the app's webhook

    def _payload(
        self, call: Call, client_state: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        states = self.client_states(call)
        return {
            "call_control_id": call.provider_call_id,
            "call_leg_id": str(uuid.uuid4()),
            "call_session_id": str(uuid.uuid4()),
            "connection_id": TELNYX_CONNECTION,
            "client_state": client_state or (states[-1] if states else None),
            "from": call.from_number,
            "to": call.to_number,
            **fields,
        }

    def initiated(self, call: Call) -> list[Delivery]:
        return [
            self.event(
                "call.initiated",
                self._url(call),
                "call.initiated",
                self._payload(call, direction="outgoing", state="bridging"),
            )
        ]

    def ringing(self, call: Call) -> list[Delivery]:
        return []  # Call Control sends no ringing webhook

    def answered(self, call: Call) -> list[Delivery]:
        return [
            self.event(
                "call.answered",
                self._url(call),
                "call.answered",
                self._payload(call, state="answered"),
            )
        ]

    def speech(self, call: Call, text: str, turn_token: str | None) -> list[Delivery]:
        wanted = (call.call_id, turn_token)
        states = [s for s in self.client_states(call) if clientstate_decode(s) == wanted]
        assert states, f"no client_state for turn {turn_token!r} was sent to Telnyx"
        payload = self._payload(
            call,
            states[-1],
            transcription_data={
                "transcript": text,
                "is_final": True,
                "confidence": 0.93,
                "transcription_track": "inbound",
            },
        )
        for key in ("from", "to"):
            payload.pop(key)
        return [self.event("call.transcription", self._url(call), "call.transcription", payload)]

    def hangup(self, call: Call, status: str = "completed") -> list[Delivery]:
        payload = self._payload(
            call,
            hangup_cause=TELNYX_CAUSES.get(status, status),
            hangup_source="callee",
            sip_hangup_cause="200",
            state="hangup",
        )
        return [self.event("call.hangup", self._url(call), "call.hangup", payload)]

    def _inbound_payload(self, control_id: str, from_: str, to: str) -> dict[str, Any]:
        return {
            "call_control_id": control_id,
            "call_leg_id": str(uuid.uuid4()),
            "call_session_id": str(uuid.uuid4()),
            "connection_id": TELNYX_CONNECTION,
            "client_state": None,
            "direction": "incoming",
            "from": from_,
            "to": to,
            "state": "parked",
            "caller_id_name": "",
            "start_time": clock.now().isoformat(),
        }

    def inbound(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        self._inbound_event_id = str(uuid.uuid4())
        return [
            self.event(
                "inbound",
                PUBLIC_URL,
                "call.initiated",
                self._inbound_payload(call_sid, from_, to),
                event_id=self._inbound_event_id,
            )
        ]

    def inbound_again(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        # Telnyx redelivering call.initiated (same event id, next attempt, new signature),
        # then the hang-up of the refused leg.
        redelivery = self.event(
            "inbound:redelivery",
            PUBLIC_URL,
            "call.initiated",
            self._inbound_payload(call_sid, from_, to),
            event_id=self._inbound_event_id,
            attempt=2,
        )
        hangup = self.event(
            "inbound:hangup",
            PUBLIC_URL,
            "call.hangup",
            {
                "call_control_id": call_sid,
                "connection_id": TELNYX_CONNECTION,
                "from": from_,
                "to": to,
                "hangup_cause": "normal_clearing",
                "hangup_source": "callee",
                "state": "hangup",
            },
        )
        return [redelivery, hangup]

    def inbound_answered(self, call: Call) -> list[Delivery]:
        """Telnyx confirms our `answer` command with call.answered (echoing its state)."""
        answers = [
            body for _, action, body in self.commands(call.provider_call_id) if action == "answer"
        ]
        if not answers:
            return []
        return [
            self.event(
                "call.answered",
                PUBLIC_URL,
                "call.answered",
                self._payload(call, answers[-1]["client_state"], state="answered"),
            )
        ]

    def status_for_unknown(self, kind: str) -> list[Delivery]:
        control_id = self.new_provider_call_id()
        payload: dict[str, Any] = {
            "call_control_id": control_id,
            "connection_id": TELNYX_CONNECTION,
            "client_state": None,
            "hangup_cause": "normal_clearing",
            "state": "hangup",
        }
        if kind == "no-direction":
            return [
                self.event(
                    "status:unknown",
                    PUBLIC_URL,
                    "call.answered",
                    {**payload, "state": "answered", "hangup_cause": None},
                )
            ]
        if kind == "our-call-id":
            url = f"{PUBLIC_URL}?callId={uuid.uuid4()}"
            payload.update(
                client_state=base64.b64encode(str(uuid.uuid4()).encode()).decode(),
                **{"from": OUR_NUMBER, "to": CALLEE},
            )
            return [self.event("status:unknown", url, "call.hangup", payload)]
        assert kind == "inbound-ended"
        payload.update({"from": FRIEND, "to": OUR_NUMBER})
        return [self.event("status:unknown", PUBLIC_URL, "call.hangup", payload)]

    def oversized_call_id(self) -> list[Delivery]:
        return [
            self.event(
                "inbound:oversized",
                PUBLIC_URL,
                "call.initiated",
                self._inbound_payload("v3:" + "7" * 497, STRANGER, OUR_NUMBER),
            )
        ]

    def deep_json(self) -> list[Delivery]:
        return [self.signed_raw("deep-json", PUBLIC_URL, b"[" * 50000)]

    def malformed(self) -> list[Delivery]:
        return [
            self.signed_raw("broken-json", PUBLIC_URL, b'{"data": {"event_type": '),
            self.signed_raw("empty", PUBLIC_URL, b""),
            self.signed_raw("not-utf8", PUBLIC_URL, b'\xff\xfe{"data": 1}'),
            self.signed_raw("words", PUBLIC_URL, b"this is not json"),
        ]

    def garbage(self) -> list[Delivery]:
        control_id = self.new_provider_call_id()
        odd = [
            [1, 2, 3],
            {"data": "x"},
            {"data": {"event_type": "call.hangup", "payload": "x"}},
            {"data": {"event_type": 7, "payload": {}}},
            {
                "data": {
                    "event_type": "call.transcription",
                    "id": ["x"],
                    "occurred_at": "never",
                    "payload": {
                        "call_control_id": control_id,
                        "client_state": "!!!",
                        "transcription_data": {
                            "transcript": 5,
                            "is_final": "no",
                            "confidence": "high",
                        },
                    },
                }
            },
            {
                "data": {
                    "event_type": "call.hangup",
                    "occurred_at": 12,
                    "payload": {"call_control_id": {"x": 1}, "hangup_cause": 42},
                }
            },
            {
                "data": {
                    "event_type": "call.initiated",
                    "payload": {
                        "call_control_id": control_id,
                        "direction": "incoming",
                        "from": "+" + "9" * 60,
                        "to": "<script>",
                        "client_state": "bm90IG91cnM=",
                    },
                }
            },
            {
                "data": {
                    "event_type": "call.dtmf.received",
                    "payload": {"call_control_id": control_id, "digit": None},
                }
            },
        ]
        return [
            self.signed_raw(f"garbage-{i}", PUBLIC_URL, json.dumps(body).encode())
            for i, body in enumerate(odd)
        ]

    # -- observations -----------------------------------------------------------------------
    def spoken(self) -> list[tuple[str, str]]:
        return [
            ("speak", body.get("payload", ""))
            for _, action, body in self.commands()
            if action == "speak"
        ]

    def hangup_requests(self) -> list[httpx.Request]:
        return [
            r
            for r in self.api.requests
            if r.method == "POST" and unquote(r.url.path).endswith("/actions/hangup")
        ]

    def prompt_sent(self, call: Call, text: str, turn_token: str) -> bool:
        """speak(prompt) under the turn's client_state, then transcription for that turn."""
        actions = [
            (action, clientstate_decode(body.get("client_state")), body.get("payload"))
            for _, action, body in self.commands(call.provider_call_id)
        ]
        turn = (call.call_id, turn_token)
        spoke = [
            i
            for i, (action, state, payload) in enumerate(actions)
            if action == "speak" and state == turn and payload == text
        ]
        return bool(spoke) and any(
            action == "transcription_start" and state == turn
            for action, state, _ in actions[spoke[0] :]
        )

    def greeted(self, call: Call, greeting: str) -> bool:
        """`answer` first, then `speak` of the greeting after call.answered."""
        actions = [(action, body) for _, action, body in self.commands(call.provider_call_id)]
        names = [action for action, _ in actions]
        if "answer" not in names or "speak" not in names:
            return False
        speak = next(body for action, body in actions if action == "speak")
        return names.index("answer") < names.index("speak") and speak["payload"] == greeting

    def is_empty_reply(self, exchange: Exchange) -> bool:
        return exchange.status == 200 and exchange.body == b"OK"

    def status_requests(self) -> list[str]:
        return [
            unquote(r.url.path)[len("/v2/calls/") :]
            for r in self.api.requests
            if r.method == "GET" and r.url.path.startswith("/v2/calls/")
        ]


def clientstate_decode(value: object) -> tuple[str | None, str | None]:
    """(callId, turnToken) of a client_state we sent (base64 of `callId[:turnToken]`)."""
    if not isinstance(value, str):
        return None, None
    text = base64.b64decode(value).decode()
    call_id, _, token = text.partition(":")
    return call_id, token or None


# == Plivo ======================================================================================

PLIVO_AUTH_ID = "MAFAKE0000000000000A"
PLIVO_TOKEN = "ZmFrZS1wbGl2by1jYXJyaWVyLWZsb3dzLTAwMQ"


def plivo_sign(url: str, body: bytes, nonce: str, token: str = PLIVO_TOKEN) -> str:
    """X-Plivo-Signature-V3 of a POST, computed with the plivo SDK's own V3 functions."""
    params = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    base = signature_v3.construct_post_url(url, params)
    signed = signature_v3.get_signature_v3(token, base, nonce)
    return signed.decode() if isinstance(signed, bytes) else str(signed)


def plivo_digits(number: str) -> str:
    return number.lstrip("+")


class PlivoDriver(CarrierDriver):
    name = "plivo"
    rejects_in_reply = True
    notify_channel = "reply"  # the XML answering the answer_url fetch

    def __init__(self) -> None:
        super().__init__()
        self.creates: dict[str, dict[str, Any]] = {}  # request_uuid -> create body
        self.call_uuids: dict[str, str] = {}  # request_uuid -> CallUUID (once answered)
        self.fetched: set[int] = set()  # transfers whose document Plivo fetched

    def credentials(self) -> dict[str, Any]:
        return {"authId": PLIVO_AUTH_ID, "authToken": PLIVO_TOKEN}

    def adapter(self, cfg: VoiceCallConfig) -> TelephonyProvider:
        from providers.plivo import PlivoProvider

        return PlivoProvider(settings=self.settings(cfg), http=self.api.client())

    # -- fake REST API ----------------------------------------------------------------------
    def new_provider_call_id(self) -> str:
        return str(uuid.uuid4())

    def _api_path(self, request: httpx.Request) -> str:
        return unquote(request.url.path)[len(f"/v1/Account/{PLIVO_AUTH_ID}/") :]

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = self._api_path(request)
        if request.method == "POST" and path == "Call/":
            request_uuid = self.new_provider_call_id()
            self.creates[request_uuid] = json.loads(request.content)
            return httpx.Response(
                201,
                json={
                    "api_id": str(uuid.uuid4()),
                    "message": "call fired",
                    "request_uuid": request_uuid,
                },
            )
        parts = path.strip("/").split("/")
        if parts[0] in ("Call", "Request") and len(parts) >= 2:
            call_id = parts[1]
            if request.method == "DELETE":
                # A request UUID is not a call (yet): only /Request/ can cancel it.
                pending = call_id in self.creates
                if (parts[0] == "Call") != pending:
                    return httpx.Response(204)
                return httpx.Response(404, json={"api_id": "a", "error": "not found"})
            if request.method == "POST":
                return httpx.Response(202, json={"api_id": "a", "message": "call transferred"})
            answer = self.status_answers.get(call_id, "in-progress")
            if answer == "error":
                return httpx.Response(500, json={"api_id": "a", "error": "internal error"})
            if answer in ("completed", "not-found") or request.url.params.get("status") != "live":
                return httpx.Response(404, json={"api_id": "a", "error": "not found"})
            return httpx.Response(200, json={"call_status": answer, "call_uuid": call_id})
        return httpx.Response(404, json={"api_id": "a", "error": "not found"})

    def transfers(self) -> list[tuple[int, str, str]]:
        """(index, CallUUID, aleg_url) of every transfer of a live call to a new document."""
        found = []
        for index, request in enumerate(self.api.requests):
            path = self._api_path(request)
            if request.method == "POST" and path.startswith("Call/") and path != "Call/":
                body = json.loads(request.content)
                found.append((index, path.strip("/").split("/")[1], body["aleg_url"]))
        return found

    # -- deliveries -------------------------------------------------------------------------
    def signed(self, label: str, url: str, params: dict[str, str]) -> Delivery:
        return self.signed_raw(label, url, urlencode(params).encode())

    def signed_raw(self, label: str, url: str, body: bytes) -> Delivery:
        nonce = str(uuid.uuid4().int)[:20]
        return Delivery(
            label=label,
            url=url,
            body=body,
            content_type="application/x-www-form-urlencoded",
            headers={
                "X-Plivo-Signature-V3": plivo_sign(url, body, nonce),
                "X-Plivo-Signature-V3-Nonce": nonce,
            },
        )

    def _create(self, call: Call) -> dict[str, Any]:
        for request_uuid, body in self.creates.items():
            if call.provider_call_id in (request_uuid, self.call_uuids.get(request_uuid)):
                return body
        return {}

    def _call_uuid(self, call: Call) -> str:
        """The CallUUID Plivo uses for the call once it is answered."""
        request_uuid = next((r for r in self.creates if r == call.provider_call_id), None)
        if request_uuid is None:
            return call.provider_call_id or ""
        return self.call_uuids.setdefault(request_uuid, self.new_provider_call_id())

    def _params(self, call: Call, **fields: str) -> dict[str, str]:
        inbound = call.direction == Call.Direction.INBOUND
        call_uuid = self._call_uuid(call)
        params = {
            "CallUUID": call_uuid,
            "Direction": "inbound" if inbound else "outbound",
            "From": plivo_digits(call.from_number),
            "To": plivo_digits(call.to_number),
            "ALegUUID": call_uuid,
        }
        request_uuid = next((r for r, c in self.call_uuids.items() if c == call_uuid), None)
        if request_uuid:
            params["RequestUUID"] = request_uuid
        params.update(fields)
        return params

    def initiated(self, call: Call) -> list[Delivery]:
        return []  # no ring_url was given: Plivo reports the answer and the hang-up

    def ringing(self, call: Call) -> list[Delivery]:
        return []

    def answered(self, call: Call) -> list[Delivery]:
        url = self._create(call).get("answer_url")
        assert url, "the call has no answer_url"
        return [
            self.signed(
                "fetch:answer", url, self._params(call, CallStatus="in-progress", Event="StartApp")
            )
        ]

    def hangup(self, call: Call, status: str = "completed") -> list[Delivery]:
        url = self._create(call).get("hangup_url") or PUBLIC_URL  # inbound: the app's URL
        cause = {"completed": "NORMAL_CLEARING", "busy": "USER_BUSY", "no-answer": "NO_ANSWER"}.get(
            status, "NORMAL_CLEARING"
        )
        return [
            self.signed(
                "hangup",
                url,
                self._params(
                    call,
                    CallStatus=status,
                    Event="Hangup",
                    HangupCause=cause,
                    HangupCauseName=cause.replace("_", " ").title(),
                    Duration="7",
                    BillDuration="60",
                ),
            )
        ]

    def listen_actions(self, turn_token: str | None) -> list[str]:
        actions = [
            el.get("action", "")
            for doc in self.reply_xmls()
            for el in ET.fromstring(doc).iter("GetInput")
        ]
        return [
            a
            for a in actions
            if parse_qs(urlsplit(a).query).get("turnToken")
            == ([turn_token] if turn_token else None)
        ]

    def speech(self, call: Call, text: str, turn_token: str | None) -> list[Delivery]:
        actions = self.listen_actions(turn_token)
        assert actions, f"no <GetInput> action for turn {turn_token!r} was given to Plivo"
        params = self._params(
            call,
            CallStatus="in-progress",
            Speech=text,
            SpeechConfidenceScore="0.93",
            InputType="speech",
        )
        return [self.signed("getinput:speech", actions[-1], params)]

    def follow_up(self, client: Client) -> None:
        """Plivo fetches the document of every transfer (aleg_url) once."""
        for index, call_uuid, url in self.transfers():
            if index in self.fetched:
                continue
            self.fetched.add(index)
            call = Call.objects.filter(provider_call_id=call_uuid).first()
            assert call is not None, f"transfer of unknown call {call_uuid}"
            self.post(
                client,
                self.signed("fetch:transfer", url, self._params(call, CallStatus="in-progress")),
            )

    def _inbound_params(self, call_uuid: str, from_: str, to: str, **fields: str) -> dict[str, str]:
        return {
            "CallUUID": call_uuid,
            "Direction": "inbound",
            "From": plivo_digits(from_),
            "To": plivo_digits(to),
            "CallStatus": "ringing",
            "Event": "StartApp",
            "CallerName": "",
            **fields,
        }

    def inbound(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        # The Application's answer_url is the public webhook, as the operator set it.
        return [self.signed("inbound", PUBLIC_URL, self._inbound_params(call_sid, from_, to))]

    def inbound_again(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        refetch = self._inbound_params(call_sid, from_, to, STIRVerification="Verified")
        hangup = self._inbound_params(
            call_sid,
            from_,
            to,
            CallStatus="completed",
            Event="Hangup",
            HangupCause="NORMAL_CLEARING",
        )
        return [
            self.signed("inbound:refetch", PUBLIC_URL, refetch),
            self.signed("inbound:hangup", PUBLIC_URL, hangup),
        ]

    def inbound_answered(self, call: Call) -> list[Delivery]:
        return []  # the XML reply to the answer fetch answers the call

    def status_for_unknown(self, kind: str) -> list[Delivery]:
        call_uuid = self.new_provider_call_id()
        ended = {
            "CallUUID": call_uuid,
            "CallStatus": "completed",
            "Event": "Hangup",
            "HangupCause": "NORMAL_CLEARING",
            "Duration": "9",
            "BillDuration": "60",
        }
        if kind == "no-direction":
            return [
                self.signed(
                    "status:unknown", PUBLIC_URL, {"CallUUID": call_uuid, "CallStatus": "ringing"}
                )
            ]
        if kind == "our-call-id":
            url = f"{PUBLIC_URL}?callId={uuid.uuid4()}&flow=hangup"
            return [
                self.signed(
                    "status:unknown",
                    url,
                    {
                        **ended,
                        "Direction": "outbound",
                        "From": plivo_digits(OUR_NUMBER),
                        "To": plivo_digits(CALLEE),
                    },
                )
            ]
        assert kind == "inbound-ended"
        return [
            self.signed(
                "status:unknown",
                PUBLIC_URL,
                {
                    **ended,
                    "Direction": "inbound",
                    "From": plivo_digits(FRIEND),
                    "To": plivo_digits(OUR_NUMBER),
                },
            )
        ]

    def oversized_call_id(self) -> list[Delivery]:
        return [
            self.signed(
                "inbound:oversized",
                PUBLIC_URL,
                self._inbound_params("7" * 500, STRANGER, OUR_NUMBER),
            )
        ]

    def malformed(self) -> list[Delivery]:
        return [
            self.signed("no-call-uuid", PUBLIC_URL, {"CallStatus": "ringing", "Event": "StartApp"}),
            self.signed(
                "blank-call-uuid",
                f"{PUBLIC_URL}?flow=hangup",
                {"CallUUID": "  ", "CallStatus": "completed"},
            ),
        ]

    def garbage(self) -> list[Delivery]:
        call_uuid = self.new_provider_call_id()
        return [
            self.signed_raw("empty", PUBLIC_URL, b""),
            self.signed_raw("words", PUBLIC_URL, b"this is not a form"),
            self.signed_raw("separators", PUBLIC_URL, b"=&=&&&=="),
            self.signed(
                "odd-status",
                f"{PUBLIC_URL}?flow=hangup",
                {"CallUUID": call_uuid, "CallStatus": "exploded", "Direction": "sideways"},
            ),
            self.signed(
                "odd-fields",
                f"{PUBLIC_URL}?callId=not-a-uuid&flow=getinput",
                {
                    "CallUUID": call_uuid,
                    "Speech": "  ",
                    "Digits": "",
                    "SpeechConfidenceScore": "nan",
                    "CallStatus": "in-progress",
                },
            ),
            self.signed(
                "odd-inbound",
                PUBLIC_URL,
                self._inbound_params(call_uuid, "+" + "9" * 60, "<script>"),
            ),
            self.signed(
                "xml-speak-unknown",
                f"{PUBLIC_URL}?callId={uuid.uuid4()}&flow=xml-speak",
                {"CallUUID": call_uuid},
            ),
        ]

    # -- observations -----------------------------------------------------------------------
    def reply_xmls(self) -> list[str]:
        return [
            e.body.decode()
            for e in self.exchanges
            if e.status == 200 and e.body.lstrip().startswith(b"<")
        ]

    def spoken(self) -> list[tuple[str, str]]:
        return [
            ("reply", el.text or "")
            for doc in self.reply_xmls()
            for el in ET.fromstring(doc).iter("Speak")
        ]

    def hangup_requests(self) -> list[httpx.Request]:
        return [r for r in self.api.requests if r.method == "DELETE"]

    def prompt_sent(self, call: Call, text: str, turn_token: str) -> bool:
        """A transfer to xml-speak, whose document says the prompt and listens for the turn."""
        for exchange in self.exchanges:
            query = parse_qs(urlsplit(exchange.delivery.url).query)
            if query.get("flow") != ["xml-speak"] or query.get("callId") != [call.call_id]:
                continue
            root = ET.fromstring(exchange.body.decode())
            says = [el.text for el in root.iter("Speak")]
            actions = [
                parse_qs(urlsplit(el.get("action", "")).query) for el in root.iter("GetInput")
            ]
            if text in says and any(a.get("turnToken") == [turn_token] for a in actions):
                return True
        return False

    def greeted(self, call: Call, greeting: str) -> bool:
        """The answer fetch's XML speaks the greeting and listens (<GetInput>)."""
        first = next(e for e in self.exchanges if e.delivery.label == "inbound")
        root = ET.fromstring(first.body.decode())
        return [el.text for el in root.iter("Speak")] == [greeting] and len(
            list(root.iter("GetInput"))
        ) == 1

    def rejected_in_reply(self, exchange: Exchange) -> bool:
        root = ET.fromstring(exchange.body.decode())
        return [child.tag for child in root] == ["Hangup"] and root[0].get("reason") == "rejected"

    def is_empty_reply(self, exchange: Exchange) -> bool:
        root = ET.fromstring(exchange.body.decode())
        return root.tag == "Response" and len(root) == 0

    def status_requests(self) -> list[str]:
        found = []
        for request in self.api.requests:
            path = self._api_path(request)
            if request.method == "GET" and request.url.params.get("status") == "live":
                found.append(path.strip("/").split("/")[1])
        return found


DRIVERS: dict[str, type[CarrierDriver]] = {
    "twilio": TwilioDriver,
    "telnyx": TelnyxDriver,
    "plivo": PlivoDriver,
}
