"""The Plivo driver: the REST API (Call/, transfers), Plivo XML, V3-signed form webhooks."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

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
from tests.fakes.signing import plivo_sign_v3

PLIVO_AUTH_ID = "MAFAKE0000000000000A"
PLIVO_TOKEN = "ZmFrZS1wbGl2by1jYXJyaWVyLWZsb3dzLTAwMQ"


def plivo_digits(number: str) -> str:
    return number.lstrip("+")


class PlivoDriver(CarrierDriver):
    name = "plivo"
    rejects_in_reply = True
    notify_hangs_up_itself = True  # the reply to its report waits, then hangs up
    notify_channel = "reply"  # the XML answering the answer_url fetch

    def __init__(self) -> None:
        super().__init__()
        self.creates: dict[str, dict[str, Any]] = {}  # request_uuid -> create body
        self.call_uuids: dict[str, str] = {}  # request_uuid -> CallUUID (once answered)
        self.fetched: set[int] = set()  # transfers whose document Plivo fetched
        self.reported: set[str] = set()  # flow=spoken redirects Plivo fetched

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
                "X-Plivo-Signature-V3": plivo_sign_v3(url, body, nonce, PLIVO_TOKEN),
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

    def fetches(self) -> list[Delivery]:
        """Plivo fetches the document of every transfer (aleg_url) once."""
        deliveries = []
        for index, call_uuid, url in self.transfers():
            if index in self.fetched:
                continue
            self.fetched.add(index)
            call = Call.objects.filter(provider_call_id=call_uuid).first()
            assert call is not None, f"transfer of unknown call {call_uuid}"
            params = self._params(call, CallStatus="in-progress")
            deliveries.append(self.signed("fetch:transfer", url, params))
        return deliveries

    def reports(self) -> list[Delivery]:
        """Plivo fetches the <Redirect> after our <Speak> once the words were said."""
        urls = [
            el.text or ""
            for doc in self.reply_xmls()
            for el in ET.fromstring(doc).iter("Redirect")
            if parse_qs(urlsplit(el.text or "").query).get("flow") == ["spoken"]
        ]
        deliveries = []
        for url in urls:
            call_id = parse_qs(urlsplit(url).query).get("callId", [""])[0]
            call = Call.objects.filter(public_id=call_id).first()
            if url in self.reported or call is None or call.answered_at is None:
                continue
            self.reported.add(url)
            params = self._params(call, CallStatus="in-progress")
            deliveries.append(self.signed("report:spoken", url, params))
        return deliveries

    def report_for(self, call: Call, utterance_id: str) -> list[Delivery]:
        query = {"callId": call.call_id, "flow": "spoken", "utteranceId": utterance_id}
        url = f"{PUBLIC_URL}?{urlencode(query)}"
        return [self.signed("report:spoken", url, self._params(call, CallStatus="in-progress"))]

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
            urls = [el.get("action", "") for el in root.iter("GetInput")]
            urls += [el.text or "" for el in root.iter("Redirect")]  # report, then listen
            actions = [parse_qs(urlsplit(url).query) for url in urls]
            if text in says and any(a.get("turnToken") == [turn_token] for a in actions):
                return True
        return False

    def greeted(self, call: Call, greeting: str) -> bool:
        """The answer fetch's XML speaks the greeting and listens (<GetInput>)."""
        first = next(e for e in self.exchanges if e.delivery.label == "inbound")
        root = ET.fromstring(first.body.decode())
        listens = [
            el
            for el in root.iter("Redirect")
            if parse_qs(urlsplit(el.text or "").query).get("listen") == ["1"]
        ]
        return [el.text for el in root.iter("Speak")] == [greeting] and len(
            list(root.iter("GetInput"))
        ) + len(listens) == 1

    def hung_up_in_reply(self, seconds: int) -> bool:
        last = [e for e in self.exchanges if e.delivery.label == "report:spoken"][-1]
        root = ET.fromstring(last.body.decode())
        waits = [child.get("length") for child in root if child.tag == "Wait"]
        return [child.tag for child in root][-1:] == ["Hangup"] and waits == [str(seconds)]

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
