"""Plivo XML documents, built with the SDK's `plivo.plivoxml` elements.

The SDK renders through lxml, which escapes every text and attribute value; nothing here
formats XML by hand. Element and attribute names: docs/carriers.md, "Plivo: XML".
"""

from __future__ import annotations

import re

from plivo import plivoxml

DEFAULT_LANGUAGE = "en-US"
# The document a call idles on while we wait for the next REST transfer
# (docs/carriers.md, "Plivo: XML").
KEEP_ALIVE_SECONDS = 300
# GetInput: executionTimeout is 5–60 s, counted after nested prompts end; speechEndTimeout is
# 2–10 s or "auto" (plivo.com/docs/voice/xml/getinput). The plugin's "1" is below the range.
EXECUTION_TIMEOUT_SECONDS = 30
SPEECH_END_TIMEOUT_SECONDS = 2
EMPTY = "<Response></Response>"
# The longest a left message waits for a machine's beep before it is said anyway.
BEEP_WAIT_SECONDS = 30
# Plivo's default stream format is L16; our codec speaks 8 kHz μ-law only
# (docs/carriers.md, "Plivo: media streams").
STREAM_CONTENT_TYPE = "audio/x-mulaw;rate=8000"
# Characters XML 1.0 cannot carry; lxml refuses them, so a stray one must not cost a reply.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def render(response: plivoxml.ResponseElement) -> str:
    """Compact XML; an element-less document is spelled `<Response></Response>`."""
    if not response.children:
        return EMPTY
    return str(response.to_string(pretty=False))


def empty() -> plivoxml.ResponseElement:
    return plivoxml.ResponseElement()


def reject() -> plivoxml.ResponseElement:
    """Refuse an inbound call from the answer fetch itself (no REST hang-up needed)."""
    return plivoxml.ResponseElement().add(plivoxml.HangupElement(reason="rejected"))


def keep_alive() -> plivoxml.ResponseElement:
    return plivoxml.ResponseElement().add(_wait())


def speak(
    text: str | None,
    *,
    language: str | None = None,
    listen_action: str | None = None,
    spoken_url: str | None = None,
    after_beep: bool = False,
) -> plivoxml.ResponseElement:
    """`<Speak>` the words, then `<GetInput>` when listening, then the keep-alive `<Wait>`.

    With `spoken_url`: `<Speak>` then `<Redirect>` there instead. Plivo reaches the
    `<Redirect>` only once the words were said, so its fetch is the report, and our reply to
    it listens, holds or hangs up (docs/carriers.md, "What each carrier tells us about
    speech").
    """
    response = plivoxml.ResponseElement()
    if after_beep:
        # A message left on a machine: Plivo reports no end of its greeting, but <Wait
        # beep="true"> ends at the voicemail beep (or after `length` without one)
        # (plivo.com/docs/voice/xml/wait, `beep`).
        response.add(plivoxml.WaitElement(length=BEEP_WAIT_SECONDS, beep=True))
    words = clean_text(text or "").strip()
    if words:
        response.add(plivoxml.SpeakElement(words, language=_language(language)))
    if spoken_url:
        return response.add(plivoxml.RedirectElement(spoken_url, method="POST"))
    if listen_action:
        response.add(_get_input(listen_action, language))
    return response.add(_wait())


def wait_then_hangup(seconds: int) -> plivoxml.ResponseElement:
    """A notify call whose message was heard: notifyHangupDelaySec of silence, then end."""
    response = plivoxml.ResponseElement()
    if seconds > 0:
        response.add(plivoxml.WaitElement(length=seconds))
    return response.add(plivoxml.HangupElement())


def transfer(
    to_number: str, *, message: str | None, language: str | None, caller_id: str | None
) -> plivoxml.ResponseElement:
    """A cold transfer: `<Speak>` the message, then `<Dial>` the new party.

    Numbers go as digits, the way Plivo's own XML examples write them; `callerId` is ours,
    the number the new party sees (plivo.com/docs/voice/xml/dial). Nothing follows the
    `<Dial>`: when it ends, the document does and Plivo hangs up.
    """
    response = plivoxml.ResponseElement()
    words = clean_text(message or "").strip()
    if words:
        response.add(plivoxml.SpeakElement(words, language=_language(language)))
    dial = plivoxml.DialElement(caller_id=caller_id.lstrip("+") if caller_id else None)
    dial.add_number(to_number.lstrip("+"))
    return response.add(dial)


def stream(url: str, *, token: str) -> plivoxml.ResponseElement:
    """`<Stream>` the call's audio to our websocket, both ways, with the per-call token.

    keepCallAlive: the stream runs alone and the call lasts as long as it does.
    extraHeaders reaches the socket as the start frame's `extra_headers`; Plivo allows only
    [A-Za-z0-9] in it (plivo.com/docs/voice/xml/audiostream), hence hex stream tokens.
    """
    element = plivoxml.StreamElement(
        url,
        bidirectional=True,
        keepCallAlive=True,
        contentType=STREAM_CONTENT_TYPE,
        extraHeaders=f"token={token}",
    )
    return plivoxml.ResponseElement().add(element)


def listen(action: str, *, language: str | None = None) -> plivoxml.ResponseElement:
    return plivoxml.ResponseElement().add(_get_input(action, language)).add(_wait())


def _get_input(action: str, language: str | None) -> plivoxml.GetInputElement:
    # redirect=true: the XML our action URL returns takes over, so that reply can carry
    # the next words (the services speak in it) instead of racing a REST transfer.
    return plivoxml.GetInputElement(
        action=action,
        method="POST",
        input_type="speech",
        execution_timeout=EXECUTION_TIMEOUT_SECONDS,
        speech_end_timeout=SPEECH_END_TIMEOUT_SECONDS,
        language=_language(language),
        redirect=True,
    )


def _language(language: str | None) -> str:
    return clean_text(language or "").strip() or DEFAULT_LANGUAGE


def _wait() -> plivoxml.WaitElement:
    return plivoxml.WaitElement(length=KEEP_ALIVE_SECONDS)


def clean_text(text: str) -> str:
    return _NOT_XML.sub(" ", text)
