"""Bodies of the Telnyx Call Control commands we send (telnyx SDK `types/calls/action_*_params`).

Pure functions: no I/O, so every field is testable without a transport.
"""

from __future__ import annotations

from typing import Any

from providers.base import CallTarget, MachineDetection, PlaceCall, StreamPlan, Transfer
from providers.common import preferred_voice as configured_voice
from providers.errors import ProviderError
from providers.telnyx import clientstate

DEFAULT_VOICE = "female"
DEFAULT_LANGUAGE = "en-US"
# `speak.payload`: "There is a 3,000 character limit" (ActionSpeakParams).
MAX_SPEAK_CHARS = 3000
# `dial.timeout_secs` accepts 5–600 s (docs/carriers.md, "Telnyx: commands").
RING_TIMEOUT_RANGE = (5, 600)
# `speak.voice` is `<Provider>[.<Model>].<VoiceId>` or, for service_level basic, male/female
# (ActionSpeakParams.voice). A TTS voice of another vendor (OpenAI "alloy", a bare
# ElevenLabs id) would be refused with 422 and the caller would hear nothing.
_VOICE_PROVIDERS = (
    "AWS",
    "Azure",
    "ElevenLabs",
    "Telnyx",
    "Minimax",
    "Resemble",
    "Inworld",
    "FishAudio",
    "Soniox",
    "xAI",
    "Humain",
)
# `send_dtmf.digits`: "Valid digits are 0-9, A-D, *, and #. Pauses can be added using
# w (0.5s) and W (1s)" (ActionSendDtmfParams). Our `,`/`p`/`P` are the dialer "pause",
# conventionally two seconds, so they become two one-second waits.
_DTMF_PAUSES = str.maketrans({",": "WW", "p": "WW", "P": "WW"})


def dial(request: PlaceCall, *, connection_id: str) -> dict[str, Any]:
    low, high = RING_TIMEOUT_RANGE
    body: dict[str, Any] = {
        "connection_id": connection_id,
        "to": request.to_number,
        "from": request.from_number,
        "webhook_url": request.webhook_url,
        "webhook_url_method": "POST",
        "client_state": clientstate.encode(request.call_id),
        "timeout_secs": min(max(request.ring_timeout_s, low), high),
    }
    if request.stream is not None:
        # The dial starts the stream itself once the callee answers (CallDialParams).
        body.update(stream_fields(request.stream))
    if request.machine_detection != MachineDetection.OFF:
        body["answering_machine_detection"] = _AMD_SETTINGS[request.machine_detection]
    return body


# CallDialParams.answering_machine_detection: `detect` sends call.machine.detection.ended
# only; `greeting_end` also call.machine.greeting.ended once a machine's greeting ends with
# a beep or silence, the moment to leave a message (Telnyx "Answering Machine Detection"
# guide, developers.telnyx.com/docs/voice/programmable-voice/answering-machine-detection).
_AMD_SETTINGS = {
    MachineDetection.DETECT: "detect",
    MachineDetection.HANGUP: "detect",
    MachineDetection.LEAVE_MESSAGE: "greeting_end",
}


def stream_fields(plan: StreamPlan) -> dict[str, Any]:
    """The stream parameters shared by dial and streaming_start.

    docs/carriers.md, "Telnyx: commands" and "Telnyx: media streams".

    rtp + PCMU both ways: without them Telnyx expects MP3 back and drops raw μ-law
    (deepgram/deepclaw#8). `stream_codec` PCMU has Telnyx transcode a PCMA leg, which our
    codec would otherwise refuse. `stream_auth_token` comes back as the
    x-telnyx-streaming-auth-token upgrade header ("sent as part of the WebSocket connection").
    """
    return {
        "stream_url": plan.url,
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "stream_auth_token": plan.token,
    }


def streaming_start(target: CallTarget) -> dict[str, Any]:
    """streaming_start for an answered inbound call (ActionStartStreamingParams).

    The token also rides in `custom_parameters`, which the start frame echoes
    (`start.custom_parameters`), so the stream authenticates even without the header.
    """
    if target.stream is None:
        raise ProviderError("No stream to start for this call")
    return {
        **stream_fields(target.stream),
        "custom_parameters": [{"name": "token", "value": target.stream.token}],
        "client_state": clientstate.encode(target.call_id),
    }


def speak(target: CallTarget, text: str, *, voice: str, language: str) -> dict[str, Any]:
    if len(text) > MAX_SPEAK_CHARS:
        raise ProviderError(f"Telnyx speak text exceeds {MAX_SPEAK_CHARS} characters")
    return {"payload": text, "voice": voice, "language": language, "client_state": state(target)}


def transcription_start(target: CallTarget, *, language: str) -> dict[str, Any]:
    # The current API takes the language inside `transcription_engine_config` (the
    # plugin's top-level `language` is the legacy shape). Google wants a bare language
    # code ("en", GoogleTranscriptionLanguage); finals only, since only a final transcript
    # answers a turn.
    return {
        "transcription_engine": "Google",
        "transcription_engine_config": {
            "language": language.split("-")[0].lower() or "en",
            "interim_results": False,
        },
        "transcription_tracks": "inbound",
        "client_state": state(target),
    }


def state(target: CallTarget) -> str:
    """`<callId>[:<turnToken>]`, so the webhooks this command causes name their turn; a
    speak (and the listening sent with it) adds its utterance, which call.speak.ended
    echoes (providers/telnyx/clientstate.py)."""
    return clientstate.encode(target.call_id, target.turn_token, target.utterance_id)


def transfer(target: CallTarget, transfer: Transfer) -> dict[str, Any]:
    """`transfer` (ActionTransferParams): `to` is required; `from`, the caller id the new
    party sees, would default to the original call's `to`, so ours is sent when known.

    `client_state` keeps our leg's webhooks naming our call; `target_leg_client_state` marks
    the new leg's, which the parser drops (providers/telnyx/clientstate.py).
    """
    body: dict[str, Any] = {
        "to": transfer.to_number,
        "client_state": clientstate.encode(target.call_id),
        "target_leg_client_state": clientstate.encode_transfer_leg(target.call_id),
    }
    if transfer.caller_id:
        body["from"] = transfer.caller_id
    return body


def dtmf_digits(digits: str) -> str:
    return digits.translate(_DTMF_PAUSES)


def preferred_voice(tts: object, chosen: str | None = None) -> str:
    """`chosen` (the call's own voice), else the voice of tts.providers[tts.provider], if
    Telnyx can speak it.

    docs/plugin-behaviour.md, "TTS config and voice lookup"; docs/carriers.md,
    "Telnyx: commands".
    """
    voice = chosen or configured_voice(tts)
    if not voice:
        return DEFAULT_VOICE
    if voice.lower() in ("female", "male"):
        return voice.lower()
    if voice.startswith("Polly."):
        return f"AWS.{voice}"  # Twilio's spelling of the same Amazon voices
    if voice.split(".", 1)[0] in _VOICE_PROVIDERS:
        return voice
    return DEFAULT_VOICE


def language(target: CallTarget) -> str:
    value = target.extra.get("language") if target.extra else None
    return str(value) if value else DEFAULT_LANGUAGE
