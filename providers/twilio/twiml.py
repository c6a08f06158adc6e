"""TwiML (Twilio Programmable Voice markup) documents, built with the SDK's VoiceResponse.

The builder escapes every attribute and text value; nothing here formats XML by hand.
"""

from __future__ import annotations

import re

from twilio.twiml.voice_response import VoiceResponse

DEFAULT_VOICE = "Polly.Joanna"
DEFAULT_LANGUAGE = "en-US"
# How long a reply holds the line while a REST update brings the next TwiML
# (docs/carriers.md, "Twilio: TwiML replies").
KEEP_ALIVE_SECONDS = 30
# The Call resource refuses inline `Twiml` longer than 4000 characters.
MAX_INLINE_TWIML = 4000

# OpenAI voice names -> Amazon Polly voices Twilio can speak
# (docs/carriers.md, "Twilio: voices for <Say>").
_OPENAI_TO_POLLY = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}
# Characters XML 1.0 cannot carry at all; ElementTree would emit them and break the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def say_voice(name: str | None) -> str:
    """A `<Say voice>` value: Polly/Google names pass, OpenAI names map, anything else Joanna."""
    if not name:
        return DEFAULT_VOICE
    if name.lower().startswith(("polly.", "google.")):
        return name
    return _OPENAI_TO_POLLY.get(name.lower(), DEFAULT_VOICE)


def clean_text(text: str) -> str:
    return _NOT_XML.sub(" ", text)


def render(response: VoiceResponse, *, declaration: bool = True) -> str:
    """Webhook replies carry the XML declaration; inline `Twiml` fields don't need it."""
    return str(response.to_xml(xml_declaration=declaration))


def empty() -> VoiceResponse:
    return VoiceResponse()


def hangup() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response


def reject() -> VoiceResponse:
    response = VoiceResponse()
    response.reject(reason="rejected")
    return response


def keep_alive(redirect_url: str | None = None) -> VoiceResponse:
    """Hold the line; with a redirect, come back to us afterwards instead of hanging up.

    A lone <Pause> ends the call when it runs out, so a caller waiting more than 30 s for
    the next turn (an agent thinking) would be cut off; the <Redirect> loops until a REST
    update replaces the document.
    """
    response = VoiceResponse()
    response.pause(length=KEEP_ALIVE_SECONDS)
    if redirect_url:
        response.redirect(redirect_url, method="POST")
    return response


def say(response: VoiceResponse, text: str, *, voice: str, language: str | None) -> None:
    response.say(clean_text(text), voice=voice, language=language or DEFAULT_LANGUAGE)


def gather(response: VoiceResponse, *, action: str, language: str | None) -> None:
    """Speech capture posting to `action`, even when nothing was heard.

    actionOnEmptyResult: without it an empty Gather falls through to the end of the
    document and Twilio hangs up; with it we get a callback and decide (keep listening).
    """
    response.gather(
        input="speech",
        speech_timeout="auto",
        language=language or DEFAULT_LANGUAGE,
        action=action,
        method="POST",
        action_on_empty_result=True,
    )


def listen(*, action: str, language: str | None) -> VoiceResponse:
    response = VoiceResponse()
    gather(response, action=action, language=language)
    return response


def notify(
    message: str, *, voice: str, language: str | None, spoken_url: str | None = None
) -> VoiceResponse:
    """The whole notify call (inline at dial time): say the message, then tell us it was
    said (`spoken_url`; our reply pauses and hangs up), or without one hang up at once."""
    response = VoiceResponse()
    say(response, message, voice=voice, language=language)
    if spoken_url:
        response.redirect(spoken_url, method="POST")
    else:
        response.hangup()
    return response


def say_then_report(
    text: str | None, *, voice: str, language: str | None, spoken_url: str
) -> VoiceResponse:
    """Say the words, then fetch `spoken_url`: Twilio reaches a <Redirect> only once the
    <Say> before it finished, so the fetch is the report that the words were said; our
    reply to it continues the call (docs/carriers.md, "What each carrier tells us about
    speech")."""
    response = VoiceResponse()
    if text:
        say(response, text, voice=voice, language=language)
    response.redirect(spoken_url, method="POST")
    return response


def pause_then_hangup(seconds: int) -> VoiceResponse:
    """A notify call whose message was heard: notifyHangupDelaySec of silence, then end."""
    response = VoiceResponse()
    if seconds > 0:
        response.pause(length=seconds)
    response.hangup()
    return response


def say_then_listen(
    text: str | None, *, voice: str, language: str | None, action: str
) -> VoiceResponse:
    response = VoiceResponse()
    if text:
        say(response, text, voice=voice, language=language)
    gather(response, action=action, language=language)
    return response


def say_then_hold(
    text: str | None, *, voice: str, language: str | None, redirect_url: str | None = None
) -> VoiceResponse:
    response = VoiceResponse()
    if text:
        say(response, text, voice=voice, language=language)
    response.pause(length=KEEP_ALIVE_SECONDS)
    if redirect_url:
        response.redirect(redirect_url, method="POST")
    return response


def play_digits(digits: str, *, redirect_url: str) -> VoiceResponse:
    """Send DTMF, then fetch our webhook again so the call continues under our control."""
    response = VoiceResponse()
    response.play(digits=digits)
    response.redirect(redirect_url, method="POST")
    return response


# Twilio's public hold music, as the plugin's call-waiting queue plays it
# (docs/carriers.md, "Twilio: TwiML replies").
HOLD_MUSIC_URL = "https://s3.amazonaws.com/com.twilio.music.classical/BusyStrings.mp3"


def hold_music() -> str:
    """The <Enqueue waitUrl> document: a notice, then music on a loop."""
    response = VoiceResponse()
    response.say("All agents are currently busy. Please hold.", voice="alice")
    response.play(HOLD_MUSIC_URL, loop=0)
    return render(response)


def connect_stream(url: str, *, token: str, digits: str | None = None) -> VoiceResponse:
    """<Connect><Stream> with the stream's token as a <Parameter>, after `digits` if given
    (DTMF on a streaming call: <Play digits> first).

    Twilio strips query strings from Stream URLs (plugin issue #9635), so the token cannot
    ride there (docs/carriers.md, "Twilio: media streams").
    """
    response = VoiceResponse()
    if digits:
        response.play(digits=digits)
    connect = response.connect()
    stream = connect.stream(url=url)
    stream.parameter(name="token", value=token)
    return response


def transfer(
    to_number: str,
    *,
    message: str | None,
    voice: str,
    language: str | None,
    caller_id: str | None,
) -> VoiceResponse:
    """A cold transfer: say the message, then <Dial> the new party.

    Without an `action` Twilio goes on with this document when the <Dial> ends, finds
    nothing after it and hangs up; the call is no longer ours by then (TwiML <Dial>,
    twilio.com/docs/voice/twiml/dial). `callerId` must be the calling number, the called
    number or a verified one (Twilio warning 13214); we pass our own number on the call.
    """
    response = VoiceResponse()
    if message:
        say(response, message, voice=voice, language=language)
    response.dial(to_number, caller_id=caller_id)
    return response


def hold_queue() -> VoiceResponse:
    """Park the caller in the call-waiting queue while another stream holds the line.

    docs/carriers.md, "Twilio: TwiML replies".
    """
    response = VoiceResponse()
    response.say("Please hold while we connect you.", voice="alice")
    response.enqueue("hold-queue", wait_url="/voice/hold-music")
    return response
