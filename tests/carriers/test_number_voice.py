"""`numbers.<n>.tts`: calls to a routed number speak with that route's voice, on the
carrier's own speech (Twilio <Say voice>, Telnyx speak); media streams:
tests/services/test_streams.py.

docs/plugin-behaviour.md, "Per-number routes".
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from calls.models import Call
from tests.carriers.conftest import Carrier
from tests.fakes.carriers.base import FRIEND, OUR_NUMBER
from tests.fakes.carriers.twilio import twiml_says

pytestmark = pytest.mark.django_db

OTHER_NUMBER = "+15550100999"
# The config's voice, and the route's for OUR_NUMBER: an OpenAI voice over the Polly one.
TTS = {"provider": "openai", "providers": {"openai": {"voice": "Polly.Joanna"}}}
ROUTES = {OUR_NUMBER: {"tts": {"providers": {"openai": {"voice": "Polly.Lupe"}}}}}


def _start(start_carrier: Carrier) -> Any:
    return start_carrier.start(tts=TTS, numbers=ROUTES, inboundPolicy="open")


def _inbound(client: Client, carrier: Any, to: str) -> Call:
    sid = carrier.new_provider_call_id()
    for response in carrier.post_all(client, carrier.inbound(sid, FRIEND, to)):
        assert response.status_code == 200
    call = Call.objects.get(provider_call_id=sid)
    for response in carrier.post_all(client, carrier.inbound_answered(call)):
        assert response.status_code == 200
    return call


def _twilio_greeting_voice(carrier: Any) -> str:
    reply = next(e for e in reversed(carrier.exchanges) if e.delivery.label == "inbound")
    document = reply.body.decode()
    assert twiml_says(document)  # the greeting is in the reply
    return document.split('voice="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("start_carrier", ["twilio"], indirect=True)
def test_twilio_greets_a_routed_number_with_its_voice(
    client: Client, start_carrier: Carrier
) -> None:
    carrier = _start(start_carrier)

    _inbound(client, carrier, OUR_NUMBER)
    assert _twilio_greeting_voice(carrier) == "Polly.Lupe"

    _inbound(client, carrier, OTHER_NUMBER)  # no route: the config's voice
    assert _twilio_greeting_voice(carrier) == "Polly.Joanna"


@pytest.mark.parametrize("start_carrier", ["telnyx"], indirect=True)
def test_telnyx_speaks_to_a_routed_number_with_its_voice(
    client: Client, start_carrier: Carrier
) -> None:
    carrier = _start(start_carrier)

    routed = _inbound(client, carrier, OUR_NUMBER)
    other = _inbound(client, carrier, OTHER_NUMBER)

    def speak_voice(call: Call) -> str:
        commands = carrier.commands(call.provider_call_id)
        return next(body["voice"] for _, action, body in commands if action == "speak")

    assert speak_voice(routed) == "AWS.Polly.Lupe"
    assert speak_voice(other) == "AWS.Polly.Joanna"
