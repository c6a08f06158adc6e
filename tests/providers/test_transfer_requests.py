"""Cold transfer at each carrier's HTTP boundary: the exact requests and documents.

docs/carriers.md, "Cold transfer".
"""

from __future__ import annotations

import base64
import json
import threading
import xml.etree.ElementTree as ET

import httpx
import pytest

from providers.base import CallTarget, ReplyContext, Transfer, WebhookRequest
from providers.errors import ProviderError
from providers.mock import MockProvider
from providers.telnyx import webhooks as telnyx_webhooks
from providers.telnyx.clientstate import decode, encode_transfer_leg, is_transfer_leg
from tests.fakes.plivo import helpers as plivo
from tests.fakes.telnyx import helpers as telnyx
from tests.fakes.twilio import helpers as twilio

CALL_ID = "0b7c8e52-6d0c-4a55-9d43-5c1f00000001"
TO = "+15555550177"
OURS = "+15550100000"
MESSAGE = 'Connecting you to Tom & Jerry <sales> "now"'


def _transfer(**fields: object) -> Transfer:
    base: dict[str, object] = {"to_number": TO, "caller_id": OURS, "language": "en-US"}
    return Transfer(**{**base, **fields})  # type: ignore[arg-type]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# -- Twilio -----------------------------------------------------------------------------------
TWILIO_CALL = (
    f"https://api.twilio.com/2010-04-01/Accounts/{twilio.ACCOUNT}/Calls/{twilio.CALL_SID}.json"
)
TWILIO_TARGET = CallTarget(
    call_id=CALL_ID,
    provider_call_id=twilio.CALL_SID,
    webhook_url=f"https://voice.example.com/voice/webhook?callId={CALL_ID}",
)


def test_twilio_replaces_the_live_twiml_with_say_then_dial() -> None:
    carrier = twilio.Carrier()
    twilio.provider(carrier).transfer(TWILIO_TARGET, _transfer(message=MESSAGE))
    request = carrier.requests[0]
    assert (request.method, str(request.url)) == ("POST", TWILIO_CALL)
    form = carrier.form()
    assert list(form) == ["Twiml"]
    raw = form["Twiml"][0]
    assert "Tom &amp; Jerry &lt;sales&gt;" in raw  # escaped by the SDK's builder
    root = ET.fromstring(raw)
    assert [child.tag for child in root] == ["Say", "Dial"]
    say, dial = root
    assert say.text == MESSAGE and say.get("voice") == "Polly.Joanna"
    assert say.get("language") == "en-US"
    assert (dial.text, dial.attrib) == (TO, {"callerId": OURS})


def test_twilio_without_a_message_or_caller_id_only_dials() -> None:
    carrier = twilio.Carrier()
    twilio.provider(carrier).transfer(TWILIO_TARGET, _transfer(caller_id=None))
    root = ET.fromstring(carrier.form()["Twiml"][0])
    assert [(child.tag, child.text, child.attrib) for child in root] == [("Dial", TO, {})]


def test_twilio_retries_the_answer_race_and_reports_a_refusal() -> None:
    race = httpx.Response(400, json={"code": 21220, "message": "Invalid call state", "status": 400})
    refused = httpx.Response(404, json={"code": 20404, "message": "Not found", "status": 404})
    carrier = twilio.Carrier(race, refused)
    sleeps: list[float] = []
    with pytest.raises(ProviderError, match="Not found"):
        twilio.provider(carrier, sleeps=sleeps).transfer(TWILIO_TARGET, _transfer())
    assert len(carrier.requests) == 2 and sleeps == [0.25]


# -- Telnyx -----------------------------------------------------------------------------------
TELNYX_PATH = "/v2/calls/v3:TEST-call-control-id-0001/actions"
TELNYX_TARGET = CallTarget(
    call_id=CALL_ID,
    provider_call_id=telnyx.CALL_CONTROL_ID,
    webhook_url=f"{telnyx.HOOK_URL}?callId={CALL_ID}",
)


def _without_command_id(body: dict[str, object]) -> dict[str, object]:
    assert isinstance(body.pop("command_id"), str)
    return body


def test_telnyx_speaks_the_message_then_sends_transfer() -> None:
    carrier = telnyx.Carrier()
    telnyx.provider(carrier).transfer(TELNYX_TARGET, _transfer(message=MESSAGE))
    assert carrier.paths() == [f"{TELNYX_PATH}/speak", f"{TELNYX_PATH}/transfer"]
    assert carrier.requests[0].headers["authorization"] == f"Bearer {telnyx.API_KEY}"
    assert _without_command_id(carrier.json(0)) == {
        "payload": MESSAGE,
        "voice": "female",
        "language": "en-US",
        "client_state": _b64(CALL_ID),
    }
    assert _without_command_id(carrier.json(1)) == {
        "to": TO,
        "from": OURS,
        "client_state": _b64(CALL_ID),
        "target_leg_client_state": _b64(f"transfer-leg:{CALL_ID}"),
    }


def test_telnyx_without_a_message_sends_transfer_alone_and_leaves_from_to_telnyx() -> None:
    carrier = telnyx.Carrier()
    telnyx.provider(carrier).transfer(TELNYX_TARGET, _transfer(caller_id=None))
    assert carrier.paths() == [f"{TELNYX_PATH}/transfer"]
    assert "from" not in carrier.json(0)


def test_telnyx_stops_the_stream_of_a_streaming_call_after_the_transfer() -> None:
    carrier = telnyx.Carrier()
    telnyx.provider(carrier).transfer(TELNYX_TARGET, _transfer(streaming=True))
    assert carrier.paths() == [f"{TELNYX_PATH}/transfer", f"{TELNYX_PATH}/streaming_stop"]
    assert _without_command_id(carrier.json(1)) == {"client_state": _b64(CALL_ID)}


def test_telnyx_a_failed_stream_stop_does_not_undo_the_transfer() -> None:
    ok = httpx.Response(200, json={"data": {"result": "ok"}})
    failed = httpx.Response(500, json={"errors": [{"code": "10001", "detail": "boom"}]})
    carrier = telnyx.Carrier(ok, failed)
    telnyx.provider(carrier).transfer(TELNYX_TARGET, _transfer(streaming=True))  # no raise
    assert len(carrier.requests) == 2


def test_telnyx_a_refused_transfer_raises_and_stops_nothing() -> None:
    refused = httpx.Response(
        422, json={"errors": [{"code": "90018", "detail": "Call has already ended"}]}
    )
    carrier = telnyx.Carrier(refused)
    with pytest.raises(ProviderError, match="already ended"):
        telnyx.provider(carrier).transfer(TELNYX_TARGET, _transfer(streaming=True))
    assert carrier.paths() == [f"{TELNYX_PATH}/transfer"]


def _telnyx_event(event_type: str, client_state: str, direction: str = "outgoing") -> bytes:
    return json.dumps(
        {
            "data": {
                "event_type": event_type,
                "id": f"evt-{event_type}",
                "occurred_at": "2026-12-07T10:00:00Z",
                "payload": {
                    "call_control_id": "v3:the-new-leg",
                    "client_state": client_state,
                    "direction": direction,
                    "from": OURS,
                    "to": TO,
                },
            }
        }
    ).encode()


@pytest.mark.parametrize("event_type", ["call.initiated", "call.answered", "call.hangup"])
def test_telnyx_webhooks_of_the_new_leg_are_not_events_of_ours(event_type: str) -> None:
    state = encode_transfer_leg(CALL_ID)
    assert telnyx_webhooks.parse_events(_telnyx_event(event_type, state)) == []
    # Our own leg's state still names our call.
    events = telnyx_webhooks.parse_events(_telnyx_event(event_type, _b64(CALL_ID)))
    assert [event.call_id for event in events] == [CALL_ID]


def test_telnyx_the_transfer_leg_marker_is_never_read_as_a_call_id() -> None:
    state = encode_transfer_leg(CALL_ID)
    assert is_transfer_leg(state) and decode(state)[0] != CALL_ID
    assert not is_transfer_leg(_b64(CALL_ID))
    for junk in (None, "", "not base64!", _b64("transfer-legs"), 42):
        assert not is_transfer_leg(junk)


# -- Plivo ------------------------------------------------------------------------------------
PLIVO_HOOK = "https://voice.example.com/voice/webhook"
PLIVO_TARGET = CallTarget(
    call_id=CALL_ID, provider_call_id=plivo.CALL_UUID, webhook_url=f"{PLIVO_HOOK}?callId={CALL_ID}"
)
TRANSFERRED = httpx.Response(202, json={"api_id": "a", "message": "call transferred"})


def test_plivo_transfers_the_a_leg_to_our_transfer_document() -> None:
    carrier = plivo.Carrier(TRANSFERRED)
    plivo.provider(carrier).transfer(PLIVO_TARGET, _transfer(message=MESSAGE))
    assert carrier.calls() == [("POST", f"{plivo.API}/Call/{plivo.CALL_UUID}/")]
    assert json.loads(carrier.requests[0].content) == {
        "legs": "aleg",
        "aleg_url": f"{PLIVO_HOOK}?callId={CALL_ID}&flow=xml-transfer",
        "aleg_method": "POST",
    }


def test_plivo_stops_the_streams_of_a_streaming_call_after_the_transfer() -> None:
    gone = httpx.Response(404, json={"api_id": "a", "error": "not found"})
    carrier = plivo.Carrier(TRANSFERRED, gone)
    plivo.provider(carrier).transfer(PLIVO_TARGET, _transfer(streaming=True))  # 404: no raise
    assert carrier.calls() == [
        ("POST", f"{plivo.API}/Call/{plivo.CALL_UUID}/"),
        ("DELETE", f"{plivo.API}/Call/{plivo.CALL_UUID}/Stream/"),
    ]


def test_plivo_a_call_that_is_not_live_is_refused_with_the_reason() -> None:
    carrier = plivo.Carrier(httpx.Response(404, json={"api_id": "a", "error": "not found"}))
    with pytest.raises(ProviderError, match="Plivo has no live call .* for transfer"):
        plivo.provider(carrier).transfer(PLIVO_TARGET, _transfer(streaming=True))
    assert len(carrier.requests) == 1  # nothing stopped


def _fetch(flow: str = "xml-transfer") -> WebhookRequest:
    url = f"{PLIVO_HOOK}?callId={CALL_ID}&flow={flow}"
    return plivo.webhook(url, {"CallUUID": plivo.CALL_UUID, "CallStatus": "in-progress"})


def test_plivo_the_transfer_fetch_is_no_event_and_names_our_call() -> None:
    adapter = plivo.provider()
    assert adapter.parse_webhook(_fetch()) == []
    assert adapter.transfer_fetch_call_id(_fetch()) == CALL_ID
    assert adapter.fetch_call_id(_fetch()) is None  # no pending speech is taken for it
    assert adapter.transfer_fetch_call_id(_fetch("xml-speak")) is None
    assert adapter.can_speak_in_reply(_fetch())


def test_plivo_the_transfer_document_speaks_then_dials_digits() -> None:
    context = ReplyContext(transfer=_transfer(message=MESSAGE))
    reply = plivo.provider().render_reply(_fetch(), context)
    assert reply.content_type == "text/xml"
    assert b"Tom &amp; Jerry &lt;sales&gt;" in reply.body
    root = ET.fromstring(reply.body)
    assert [child.tag for child in root] == ["Speak", "Dial"]
    speak, dial = root
    assert (speak.text, speak.get("language")) == (MESSAGE, "en-US")
    assert dial.attrib == {"callerId": OURS.lstrip("+")}
    assert [(n.tag, n.text) for n in dial] == [("Number", TO.lstrip("+"))]


def test_plivo_a_transfer_fetch_with_nothing_waiting_gets_an_empty_document() -> None:
    reply = plivo.provider().render_reply(_fetch(), ReplyContext(known=True, state="listening"))
    assert reply.body == b"<Response></Response>"


def test_plivo_a_replayed_transfer_fetch_is_not_answered_twice() -> None:
    context = ReplyContext(replay=True, transfer=_transfer())
    assert plivo.provider().render_reply(_fetch(), context).body == b"<Response></Response>"


# -- mock -------------------------------------------------------------------------------------
def test_the_mock_records_the_transfer() -> None:
    carrier = MockProvider(settings={"simulate": False})
    carrier.transfer(PLIVO_TARGET, _transfer(message="hi", streaming=True))
    assert carrier.sent == [
        ("transfer", {"to": TO, "message": "hi", "caller_id": OURS, "streaming": True})
    ]


class _Scheduling(MockProvider):
    """The simulated carrier with its timers captured instead of started."""

    def __init__(self) -> None:
        super().__init__(settings={"simulate": True, "callerReplies": ["Sure."]})
        self.scheduled: list[tuple[int, str, dict[str, object]]] = []

    def _later(  # type: ignore[override]
        self,
        delay_ms: int,
        url: str,
        provider_call_id: str,
        type_: str,
        then: object = None,
        **fields: object,
    ) -> threading.Timer:
        self.scheduled.append((delay_ms, type_, fields))
        return threading.Timer(3600, lambda: None)


def test_the_simulated_caller_stops_answering_us_and_our_leg_ends_later() -> None:
    carrier = _Scheduling()
    carrier.start_listening(PLIVO_TARGET)  # a reply, then the idle hang-up, are scheduled
    assert [type_ for _, type_, _ in carrier.scheduled] == ["call.speech", "call.ended"]
    carrier.transfer(PLIVO_TARGET, _transfer())
    assert carrier._idle == {}  # the idle hang-up of the caller was called off
    assert carrier.scheduled[-1] == (5000, "call.ended", {"reason": "completed"})
