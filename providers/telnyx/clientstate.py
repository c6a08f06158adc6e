"""Telnyx Call Control v2 `client_state`: our ids in the base64 text Telnyx echoes back.

Telnyx copies the `client_state` of a command into `payload.client_state` of every later
webhook for that leg (telnyx SDK `ActionSpeakParams.client_state`: "add state to every
subsequent webhook"; it "must be a valid Base-64 encoded string"). We put `<callId>` there,
or `<callId>:<turnToken>` while a turn listens, so webhooks name the call and the turn; a
`speak` (and the listening that follows it) adds its utterance, `<callId>:[<turnToken>]:
<utteranceId>`, so its `call.speak.ended` names the words.
"""

from __future__ import annotations

import base64
import binascii
import re

# Our callIds are UUIDs and turn tokens are hex; anything else (another app's JSON state,
# say) is not ours and must not be taken for a callId.
_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def encode(call_id: str, turn_token: str | None = None, utterance_id: str | None = None) -> str:
    text = f"{call_id}:{turn_token}" if turn_token else call_id
    if utterance_id:
        text = f"{call_id}:{turn_token or ''}:{utterance_id}"
    return base64.b64encode(text.encode()).decode("ascii")


# The new leg a `transfer` dials reports to our webhook too, under a call_control_id of its
# own. Its state says so, and its webhooks are dropped: they must neither move our call to
# that id nor register a call of their own (docs/carriers.md, "Cold transfer").
_TRANSFER_LEG = "transfer-leg"


def encode_transfer_leg(call_id: str) -> str:
    return base64.b64encode(f"{_TRANSFER_LEG}:{call_id}".encode()).decode("ascii")


def is_transfer_leg(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return text.startswith(f"{_TRANSFER_LEG}:")


def decode(value: object) -> tuple[str | None, str | None]:
    """(callId, turnToken) from an echoed client_state; (None, None) when it is not ours."""
    call_id, turn_token, _ = decode_all(value)
    return call_id, turn_token


def decode_all(value: object) -> tuple[str | None, str | None, str | None]:
    """(callId, turnToken, utteranceId) from an echoed client_state; Nones when not ours."""
    if not isinstance(value, str) or not value:
        return None, None, None
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None, None
    call_id, _, rest = text.partition(":")
    if not _ID.fullmatch(call_id):
        return None, None, None
    token, _, utterance = rest.partition(":")
    return (
        call_id,
        token if _ID.fullmatch(token) else None,
        utterance if _ID.fullmatch(utterance) else None,
    )
