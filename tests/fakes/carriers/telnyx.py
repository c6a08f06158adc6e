"""The Telnyx driver: Call Control commands, JSON webhooks signed with Ed25519."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import unquote

import httpx

from calls import clock
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
from tests.fakes.signing import telnyx_headers, telnyx_key, telnyx_public_key_b64

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
        self.key = telnyx_key()
        self.dials: dict[str, dict[str, Any]] = {}  # call_control_id -> dial body
        self.reported = 0  # speak commands whose call.speak.ended was sent

    def credentials(self) -> dict[str, Any]:
        return {
            "apiKey": TELNYX_API_KEY,
            "connectionId": TELNYX_CONNECTION,
            "publicKey": telnyx_public_key_b64(self.key),
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
        return Delivery(
            label=label,
            url=url,
            body=body,
            content_type="application/json",
            headers=telnyx_headers(self.key, body),
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

    def reports(self) -> list[Delivery]:
        """call.speak.ended (completed) for each speak, in order, echoing its client_state."""
        speaks = [(leg, body) for leg, action, body in self.commands() if action == "speak"]
        deliveries = []
        for leg, body in speaks[self.reported :]:
            call = Call.objects.filter(provider_call_id=leg).first()
            if call is None or call.answered_at is None:
                break
            self.reported += 1
            payload = self._payload(call, body.get("client_state"), status="completed")
            for key in ("from", "to"):
                payload.pop(key)
            deliveries.append(
                self.event("report:spoken", self._url(call), "call.speak.ended", payload)
            )
        return deliveries

    def report_for(self, call: Call, utterance_id: str) -> list[Delivery]:
        state = base64.b64encode(f"{call.call_id}::{utterance_id}".encode()).decode()
        payload = self._payload(call, state, status="completed")
        return [self.event("report:spoken", self._url(call), "call.speak.ended", payload)]

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
    """(callId, turnToken) of a client_state we sent (base64 of
    `callId[:turnToken[:utteranceId]]`; a speak's utterance follows the turn)."""
    if not isinstance(value, str):
        return None, None
    text = base64.b64decode(value).decode()
    call_id, _, rest = text.partition(":")
    token = rest.partition(":")[0]
    return call_id, token or None
