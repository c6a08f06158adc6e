"""The Twilio driver: the REST API (Calls.json), TwiML, form webhooks signed as Twilio signs."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from calls.config import VoiceCallConfig
from calls.models import Call
from providers.base import TelephonyProvider
from tests.fakes.carriers.base import (
    CALLEE,
    FRIEND,
    OUR_NUMBER,
    PUBLIC_URL,
    STRANGER,
    CarrierDriver,
    Delivery,
    Exchange,
)
from tests.fakes.signing import twilio_sign

TWILIO_ACCOUNT = "AC" + "5" * 32
TWILIO_TOKEN = "f" * 32  # a fake auth token


def twiml_says(document: str) -> list[str]:
    return [el.text or "" for el in ET.fromstring(document).iter("Say")]


def twiml_gather_actions(document: str) -> list[str]:
    return [el.get("action", "") for el in ET.fromstring(document).iter("Gather")]


def twiml_spoken_redirects(document: str) -> list[str]:
    """<Redirect> URLs to flow=spoken: fetched once the <Say> before them was said."""
    return [
        el.text or ""
        for el in ET.fromstring(document).iter("Redirect")
        if parse_qs(urlsplit(el.text or "").query).get("flow") == ["spoken"]
    ]


class TwilioDriver(CarrierDriver):
    name = "twilio"
    rejects_in_reply = True
    notify_hangs_up_itself = True
    notify_channel = "create"  # inline TwiML of the create request

    def __init__(self) -> None:
        super().__init__()
        self.creates: dict[str, dict[str, list[str]]] = {}  # CallSid -> create form
        self.reported: set[str] = set()  # flow=spoken redirects Twilio fetched

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
                "X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN),
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
            headers={"X-Twilio-Signature": twilio_sign(url, body, TWILIO_TOKEN)},
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

    def reports(self) -> list[Delivery]:
        documents = [doc for _, doc in self.rest_twimls()] + self.reply_twimls()
        deliveries = []
        for url in [u for doc in documents for u in twiml_spoken_redirects(doc)]:
            call_id = parse_qs(urlsplit(url).query).get("callId", [""])[0]
            call = Call.objects.filter(public_id=call_id).first()
            if url in self.reported or call is None or call.answered_at is None:
                continue
            self.reported.add(url)
            params = self._call_params(call, CallStatus="in-progress")
            deliveries.append(self.signed("report:spoken", url, params))
        return deliveries

    def report_for(self, call: Call, utterance_id: str) -> list[Delivery]:
        query = {"callId": call.call_id, "flow": "spoken", "utteranceId": utterance_id}
        url = f"{PUBLIC_URL}?{urlencode(query)}"
        params = self._call_params(call, CallStatus="in-progress")
        return [self.signed("report:spoken", url, params)]

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
        """The prompt went by update, followed by listening for the turn: a <Gather> for it,
        or the <Redirect> that reports the prompt said and then listens for it."""
        for kind, document in self.rest_twimls():
            if kind != "update" or text not in twiml_says(document):
                continue
            for url in twiml_gather_actions(document) + twiml_spoken_redirects(document):
                query = parse_qs(urlsplit(url).query)
                if query.get("turnToken") == [turn_token] and query.get("callId") == [call.call_id]:
                    return True
        return False

    def inbound_answered(self, call: Call) -> list[Delivery]:
        return []  # the TwiML reply to the first webhook answers the call

    def greeted(self, call: Call, greeting: str) -> bool:
        """The reply to the first webhook says the greeting and listens (a <Gather>)."""
        first = next(e for e in self.exchanges if e.delivery.label == "inbound")
        document = first.body.decode()
        listens = [
            url
            for url in twiml_spoken_redirects(document)
            if parse_qs(urlsplit(url).query).get("listen") == ["1"]
        ]
        return (
            first.status == 200
            and twiml_says(document) == [greeting]
            and len(twiml_gather_actions(document)) + len(listens) == 1
        )

    def rejected_in_reply(self, exchange: Exchange) -> bool:
        root = ET.fromstring(exchange.body.decode())
        return [child.tag for child in root] == ["Reject"]

    def hung_up_in_reply(self, seconds: int) -> bool:
        last = [e for e in self.exchanges if e.delivery.label == "report:spoken"][-1]
        root = ET.fromstring(last.body.decode())
        pause = [child.get("length") for child in root if child.tag == "Pause"]
        return [child.tag for child in root][-1:] == ["Hangup"] and pause == [str(seconds)]

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
