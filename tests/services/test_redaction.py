"""Redaction rules (calls/services/redaction.py) and where they apply: the stored line and
event payload are redacted, the words in flight are not.

docs/architecture.md, "Retention and redaction".
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.events import event_apply
from calls.services.lifecycle import call_finalize, transcript_add
from calls.services.redaction import luhn_valid, redact, region_of
from calls.services.turns import operation_settle
from providers.base import EventType, NormalizedEvent
from tests.services.test_auto_reply import speech

ALL = ("phone", "email", "card")
# The first phone match loads phonenumbers' metadata: slow once, so no per-example deadline.
NO_DEADLINE = settings(deadline=None)
CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "6011000000000004")


def _luhn_digit(body: str) -> str:
    """The check digit that makes body + digit pass Luhn."""
    return next(d for d in "0123456789" if luhn_valid(body + d))


@NO_DEADLINE
@given(
    body=st.text(alphabet="0123456789", min_size=12, max_size=18),
    sep=st.sampled_from(["", " ", "-"]),
)
def test_a_luhn_valid_run_of_13_to_19_digits_is_a_card(body: str, sep: str) -> None:
    digits = body + _luhn_digit(body)
    spoken = sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))
    assert redact(f"my card is {spoken}, thanks", kinds=["card"]) == "my card is [card], thanks"


@NO_DEADLINE
@given(body=st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_a_digit_run_failing_luhn_is_left_alone(body: str) -> None:
    if luhn_valid(body):
        body = body[:-1] + str((int(body[-1]) + 1) % 10)  # one digit off: Luhn fails
    assert redact(f"order {body} shipped", kinds=["card"]) == f"order {body} shipped"


@NO_DEADLINE
@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_runs_shorter_than_13_digits_are_never_cards(digits: str) -> None:
    assert redact(f"ref {digits}", kinds=["card"]) == f"ref {digits}"


@pytest.mark.parametrize("card", CARDS)
def test_well_known_test_cards_are_redacted(card: str) -> None:
    assert redact(f"it's {card}.", kinds=ALL, region="US") == "it's [card]."


@pytest.mark.parametrize(
    ("said", "region"),
    [
        ("+1 415 555 2671", "ZZ"),
        ("+14155552671", "GB"),
        ("(415) 555-2671", "US"),
        ("415-555-2671", "US"),
        ("415.555.2671", "US"),
        ("1-212-456-7890", "US"),
        ("020 7946 0958", "GB"),
        ("+44 20 7946 0958", "US"),
        ("+33 6 12 34 56 78", "US"),
        ("+1 555 555 0123", "US"),  # fictional, but written in E.164: hidden all the same
    ],
)
def test_phone_numbers_in_e164_and_national_formats_are_redacted(said: str, region: str) -> None:
    assert redact(f"call me on {said} tonight", kinds=["phone"], region=region) == (
        "call me on [phone] tonight"
    )


def test_a_national_format_needs_the_calls_region() -> None:
    # Without a region only "+" numbers are recognisable: 415-555-2671 is just digits.
    assert redact("ring 415-555-2671", kinds=["phone"], region="ZZ") == "ring 415-555-2671"


@pytest.mark.parametrize(
    "said",
    [
        "see you at 10:30",
        "at 10:30 or 11:45 tomorrow",
        "it costs $1,250",
        "that's $1,250.00 in total",
        "1,250,000 dollars",
        "on 2024-05-01",
        "room 4521",
        "pin 1234",
        "order 1234567",
        "between 9 and 5",
        "call me at 5",
    ],
)
@pytest.mark.parametrize("region", ["US", "GB", "DE"])
def test_times_prices_and_short_numbers_are_not_redacted(said: str, region: str) -> None:
    assert redact(said, kinds=ALL, region=region) == said


@NO_DEADLINE
@given(
    user=st.from_regex(r"[a-z][a-z0-9._+-]{0,15}", fullmatch=True),
    domain=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,8}){0,2}", fullmatch=True),
    tld=st.sampled_from(["com", "org", "co.uk", "io", "de"]),
)
def test_email_addresses_are_redacted(user: str, domain: str, tld: str) -> None:
    said = f"write to {user}@{domain}.{tld} please"
    assert redact(said, kinds=["email"]) == "write to [email] please"


@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.sampled_from(["yes", "ok", "at", "10:30", "$5", "@", "me", "."])))
def test_ordinary_speech_is_unchanged(words: list[str]) -> None:
    said = " ".join(words)
    assert redact(said, kinds=ALL, region="US") == said


def test_only_the_configured_kinds_are_redacted() -> None:
    said = "a@b.io, 4111 1111 1111 1111, +1 415 555 2671"
    assert redact(said, kinds=["email"]) == "[email], 4111 1111 1111 1111, +1 415 555 2671"
    assert redact(said, kinds=[]) == said


def test_the_region_comes_from_the_first_number_that_parses() -> None:
    assert region_of(["", "nonsense", "+442079460958", "+14155552671"]) == "GB"
    assert region_of(["+15555550123"]) == "US"  # by country code: fictional ranges count
    assert region_of([]) == "ZZ"


def test_luhn_matches_a_reference_implementation() -> None:
    rng = random.Random(7)
    for _ in range(200):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(13, 19)))
        doubled = [int(d) * (2 if i % 2 else 1) for i, d in enumerate(reversed(digits))]
        assert luhn_valid(digits) == (sum(d // 10 + d % 10 for d in doubled) % 10 == 0)


# --- where it applies --------------------------------------------------------------------

REDACTING = {"retention": {"redact": list(ALL)}}
SAID = "I'm on (415) 555-2671 or bob@example.com, card 4111 1111 1111 1111"
STORED = "I'm on [phone] or [email], card [card]"


@pytest.mark.django_db
def test_without_redact_lines_are_stored_as_said(make_call: Any) -> None:
    call = make_call(to_number="+14155550000")
    assert transcript_add(call=call, speaker="user", text=SAID).text == SAID


@pytest.mark.django_db
def test_every_stored_line_and_the_speech_event_are_redacted(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure(REDACTING)
    call = make_call(state="listening", to_number="+14155550000")

    speech(call, SAID)
    transcript_add(call=call, speaker="bot", text="Noted: bob@example.com")

    assert list(call.transcript.values_list("speaker", "text")) == [
        ("user", STORED),
        ("bot", "Noted: [email]"),
    ]
    event = CallEvent.objects.get(call=call, type=EventType.SPEECH)
    assert event.payload["transcript"] == STORED


@pytest.mark.django_db
def test_keyed_card_digits_are_redacted_in_the_dtmf_event(
    configure: Any, mock_carrier: Any, make_call: Any
) -> None:
    configure(REDACTING)
    call = make_call(state="listening")
    event_apply(
        provider="mock",
        event=NormalizedEvent(
            type=EventType.DTMF, id="d1", call_id=call.call_id, digits="4111111111111111"
        ),
    )
    assert CallEvent.objects.get(call=call, type=EventType.DTMF).payload["digits"] == "[card]"


@pytest.fixture
def turn_call(configure: Any, mock_carrier: Any, make_call: Any) -> Call:
    """A redacting config and a call whose turn "t1" a synchronous `continue` holds."""
    configure(REDACTING)
    return make_call(state="listening", turn_token="t1")


@pytest.mark.django_db
def test_a_waiting_continue_is_handed_the_callers_words_once(turn_call: Call) -> None:
    call = turn_call
    speech(call, SAID, turn_token="t1")

    call.refresh_from_db()
    assert call.metadata["turnAnswer"] == {"turnToken": "t1", "text": SAID}
    assert TranscriptEntry.objects.get(call=call).text == STORED


@pytest.mark.django_db
def test_an_unredacted_answer_is_not_copied_beside_the_line(turn_call: Call) -> None:
    call = turn_call
    assert operation_settle(call=call, turn_token="t1", transcript="yes please") is False
    call.refresh_from_db()
    assert "turnAnswer" not in call.metadata


@pytest.mark.django_db
def test_ending_the_call_drops_an_answer_nobody_took(turn_call: Call) -> None:
    call = turn_call
    speech(call, SAID, turn_token="t1")

    assert call_finalize(call=call, reason="hangup-user")

    call.refresh_from_db()
    assert "turnAnswer" not in call.metadata
