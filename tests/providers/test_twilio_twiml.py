"""TwiML builders: SDK VoiceResponse output, escaping, voices, action URLs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.common import preferred_voice, with_query
from providers.twilio import twiml


def _xml(document: twiml.VoiceResponse) -> ET.Element:
    return ET.fromstring(twiml.render(document))


def test_reply_documents_carry_the_declaration_inline_ones_do_not() -> None:
    assert twiml.render(twiml.empty()) == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert twiml.render(twiml.hangup(), declaration=False) == "<Response><Hangup /></Response>"


def test_fixed_documents() -> None:
    assert twiml.render(twiml.reject(), declaration=False) == (
        '<Response><Reject reason="rejected" /></Response>'
    )
    assert twiml.render(twiml.keep_alive(), declaration=False) == (
        '<Response><Pause length="30" /></Response>'
    )


def test_notify_escapes_markup_in_the_message() -> None:
    text = twiml.render(
        twiml.notify('<Hangup/> & "more"', voice="Polly.Joanna", language=None), declaration=False
    )
    assert text == (
        '<Response><Say language="en-US" voice="Polly.Joanna">'
        '&lt;Hangup/&gt; &amp; "more"</Say><Hangup /></Response>'
    )


def test_attribute_values_are_escaped() -> None:
    action = 'https://x.test/hook?callId=1&flow=gather&turnToken="><Hangup/>'
    text = twiml.render(twiml.listen(action=action, language=None), declaration=False)
    assert "&amp;flow=gather" in text and "&quot;&gt;&lt;Hangup/&gt;" in text
    root = ET.fromstring(text)
    assert [c.tag for c in root] == ["Gather"] and root[0].get("action") == action


def test_gather_attributes() -> None:
    root = _xml(twiml.listen(action="https://x.test/h", language="de-DE"))
    assert root[0].attrib == {
        "action": "https://x.test/h",
        "actionOnEmptyResult": "true",
        "input": "speech",
        "language": "de-DE",
        "method": "POST",
        "speechTimeout": "auto",
    }


def test_control_characters_cannot_break_the_document() -> None:
    root = _xml(twiml.say_then_hold("a\x00b\x1bc\td", voice="Polly.Joanna", language=None))
    assert root[0].text == "a b c\td"


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200))
def test_any_text_gives_well_formed_twiml(text: str) -> None:
    root = _xml(
        twiml.say_then_listen(
            text, voice="Polly.Joanna", language=None, action="https://x.test/h?a=1&b=2"
        )
    )
    # XML parsers normalise line ends; everything else comes back as written.
    expected = twiml.clean_text(text).replace("\r\n", "\n").replace("\r", "\n")
    assert root[0].tag == "Say" and (root[0].text or "") == expected


def test_play_digits_then_redirect() -> None:
    root = _xml(twiml.play_digits("12w#", redirect_url="https://x.test/h?callId=1&x=<"))
    assert [(c.tag, c.attrib, c.text) for c in root] == [
        ("Play", {"digits": "12w#"}, None),
        ("Redirect", {"method": "POST"}, "https://x.test/h?callId=1&x=<"),
    ]


@pytest.mark.parametrize(
    ("name", "voice"),
    [
        ("alloy", "Polly.Joanna"),
        ("echo", "Polly.Matthew"),
        ("fable", "Polly.Amy"),
        ("onyx", "Polly.Brian"),
        ("nova", "Polly.Salli"),
        ("shimmer", "Polly.Kimberly"),
        ("Onyx", "Polly.Brian"),
        ("Polly.Vicki-Neural", "Polly.Vicki-Neural"),
        ("polly.Hans", "polly.Hans"),
        ("Google.de-DE-Standard-A", "Google.de-DE-Standard-A"),
        ("rachel", "Polly.Joanna"),
        ("", "Polly.Joanna"),
        (None, "Polly.Joanna"),
    ],
)
def test_say_voice_mapping(name: str | None, voice: str) -> None:
    assert twiml.say_voice(name) == voice


def test_preferred_voice_lookup_order() -> None:
    block = {"voiceId": "d", "voice": "c", "speakerVoiceId": "b", "speakerVoice": "a"}
    tts = {"provider": "p", "providers": {"p": dict(block)}}
    assert preferred_voice(tts) == "a"
    for key, expected in (("speakerVoice", "b"), ("speakerVoiceId", "c"), ("voice", "d")):
        del tts["providers"]["p"][key]
        assert preferred_voice(tts) == expected
    assert preferred_voice({"provider": "missing", "providers": {}}) is None
    assert preferred_voice(None) is None


def test_with_query_encodes_and_skips_empty_values() -> None:
    url = with_query(
        "https://x.test/h?callId=1", flow="gather", turnToken="a b&c", lang=None, attempt=2
    )
    assert url.startswith("https://x.test/h?callId=1&flow=gather&")
    assert parse_qs(urlsplit(url).query) == {
        "callId": ["1"],
        "flow": ["gather"],
        "turnToken": ["a b&c"],
        "attempt": ["2"],
    }
    assert with_query("https://x.test/h", type="status") == "https://x.test/h?type=status"
    assert with_query("https://x.test/h") == "https://x.test/h"
