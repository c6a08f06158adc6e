"""The call's speech language comes from the TTS config (issue 4: "voice and language from the
TTS config"), for command speech, reply speech and document-fetch speech alike."""

from __future__ import annotations

from typing import Any

import pytest

from calls.services.lifecycle import call_target
from calls.services.speech import InlineReply, pending_speech_take, speak
from providers.common import preferred_language

pytestmark = pytest.mark.django_db

SPANISH = {
    "tts": {
        "provider": "elevenlabs",
        "providers": {"elevenlabs": {"apiKey": "k", "languageCode": "es-ES"}},
    }
}


@pytest.mark.parametrize(
    ("tts", "expected"),
    [
        (
            {"provider": "elevenlabs", "providers": {"elevenlabs": {"languageCode": "es-ES"}}},
            "es-ES",
        ),
        ({"provider": "microsoft", "providers": {"microsoft": {"lang": "de-DE"}}}, "de-DE"),
        ({"provider": "openai", "providers": {"openai": {"voice": "alloy"}}}, None),
        ({}, None),
    ],
)
def test_the_selected_tts_providers_language_is_preferred(tts: Any, expected: Any) -> None:
    assert preferred_language(tts) == expected


def test_carrier_commands_get_the_language(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure(SPANISH)
    assert call_target(make_call()).extra["language"] == "es-ES"


def test_speech_in_a_reply_carries_the_language(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure(SPANISH)
    inline = InlineReply()
    speak(make_call(), "Hola", listen_after=True, inline=inline)
    assert inline.speech is not None and inline.speech.language == "es-ES"


def test_speech_waiting_for_a_document_fetch_carries_the_language(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure(SPANISH)
    call = make_call(metadata={"pendingSpeech": {"text": "Hola", "listen": True}})
    speech = pending_speech_take(call)
    assert speech is not None and speech.language == "es-ES"
