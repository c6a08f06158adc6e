"""/voice/hold-music: the Twilio call-waiting queue's wait document.

docs/carriers.md, "Twilio: TwiML replies".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.test import Client

TWILIO = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC00000000000000000000000000000001", "authToken": "t"},
    "publicUrl": "https://voice.example.com/voice/webhook",
}


@pytest.mark.parametrize("method", ["get", "post"])
def test_twilio_gets_a_notice_then_music_on_a_loop_without_auth(
    client: Client, configure: Any, method: str
) -> None:
    configure(TWILIO)
    response = getattr(client, method)("/voice/hold-music")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    say, play = list(root)
    assert (say.tag, say.get("voice"), play.tag, play.get("loop")) == ("Say", "alice", "Play", "0")
    assert play.text.endswith("BusyStrings.mp3")


def test_carriers_without_a_queue_answer_404(client: Client, configure: Any) -> None:
    configure({})
    assert client.get("/voice/hold-music").status_code == 404
