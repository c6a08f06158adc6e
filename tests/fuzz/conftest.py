"""Shared pieces of the carrier webhook fuzz tests (tests/fuzz/test_<carrier>_webhooks.py).

* `FUZZ`: the hypothesis settings every fuzz test uses — `FUZZ_EXAMPLES` examples (40, or
  `VOICECALL_FUZZ_EXAMPLES` from the environment for a longer run), no deadline, and the
  health checks that a database-backed, function-scoped test trips on purpose switched off.
  A failure is reproducible with `--hypothesis-seed=<seed>` and is replayed from
  `.hypothesis/` on the next run.
* `isolated()`: each example runs in a savepoint that is rolled back at its end, so examples
  never see each other's rows, on SQLite and on PostgreSQL alike, and a request that breaks
  the transaction cannot poison the examples after it.
* What the properties compare: `Snapshot` (row counts of every table a webhook writes, and
  the full rows of the calls under test) and `stored_text_problems()` (NUL, other control
  characters and lone surrogates anywhere a webhook stores carrier text, and values longer
  than their column, which only PostgreSQL refuses).
* Hostile carrier input: the strategies `nasty_text`, `huge_text` and `garbled`, and the
  edge values `EDGE_NUMBERS` (NaN, infinities, integers beyond float range),
  `EDGE_ISO_TIMES`/`EDGE_RFC2822_TIMES` (years 1 and 9999, UTC offsets past ±15:59) and
  `LONG_NUMBER` (a caller number longer than any column built from it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

from django.db import transaction
from django.db.models import CharField
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from calls.models import Call, CallEvent, ReplayKey, TranscriptEntry
from calls.state import NON_TERMINAL, TERMINAL, can_transition, is_terminal
from calls.web.gate import MAX_BODY_BYTES
from tests.fakes.carriers.base import Delivery

DEFAULT_EXAMPLES = 40


def _examples_from_env() -> int:
    raw = os.environ.get("VOICECALL_FUZZ_EXAMPLES", "").strip()
    if not raw:
        return DEFAULT_EXAMPLES
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"VOICECALL_FUZZ_EXAMPLES must be a positive integer, not {raw!r}")
    return int(raw)


FUZZ_EXAMPLES = _examples_from_env()
settings.register_profile(
    "voicecall-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    # No "explain" phase: on a failure it re-runs the example hundreds of times to annotate
    # it, which costs minutes with a database in the loop; shrinking is kept.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
# Used as a decorator per test: loading the profile globally would change the settings of
# every other hypothesis test in the suite.
FUZZ = settings.get_profile("voicecall-fuzz")

#: The gate's limit: a body larger than this is answered 413 before anything reads it.
BODY_LIMIT = MAX_BODY_BYTES
#: The largest body the "huge values" strategies aim for (the gate's limit minus headroom).
HUGE_BUDGET = 60 * 1024

# -- isolation and snapshots -----------------------------------------------------------------


@contextmanager
def isolated() -> Iterator[None]:
    """One hypothesis example: everything it writes is rolled back when it ends."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


@dataclass(frozen=True)
class Counts:
    """Rows of every table a webhook may write."""

    calls: int
    events: int
    transcript: int
    replay_keys: int

    @classmethod
    def now(cls) -> Counts:
        return cls(
            calls=Call.objects.count(),
            events=CallEvent.objects.count(),
            transcript=TranscriptEntry.objects.count(),
            replay_keys=ReplayKey.objects.count(),
        )


def call_row(call: Call) -> dict[str, Any]:
    """Every column of the call as stored now, plus how many transcript lines it has."""
    row = Call.objects.filter(pk=call.pk).values().get()
    row["transcript_lines"] = TranscriptEntry.objects.filter(call_id=call.pk).count()
    row["event_rows"] = CallEvent.objects.filter(call_id=call.pk).count()
    return row


@dataclass(frozen=True)
class Snapshot:
    """Row counts and the full rows of the calls a property watches."""

    counts: Counts
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def take(cls, *calls: Call) -> Snapshot:
        return cls(Counts.now(), {call.pk: call_row(call) for call in calls})

    def diff(self, other: Snapshot) -> list[str]:
        """Human-readable differences (empty when nothing changed)."""
        found = []
        if self.counts != other.counts:
            found.append(f"row counts {self.counts} -> {other.counts}")
        for pk, row in self.rows.items():
            new = other.rows.get(pk, {})
            for name, value in row.items():
                if new.get(name) != value:
                    found.append(f"call {pk} {name}: {value!r} -> {new.get(name)!r}")
        return found


def terminal_facts(call: Call) -> dict[str, Any]:
    """What a finished call must keep forever: its end and its transcript."""
    row = call_row(call)
    return {name: row[name] for name in ("state", "end_reason", "ended_at", "transcript_lines")}


def assert_moved_forward(before: str, after: str, context: str = "") -> None:
    """A call's state only moves along the state machine; a terminal state never moves."""
    assert after == before or can_transition(before, after), (
        f"state moved backwards {before} -> {after} {context}"
    )
    if is_terminal(before):
        assert after == before, f"terminal state {before} changed to {after} {context}"


# Stored carrier text: no C0/C1 control, DEL or lone surrogate. Words lose them (spaces,
# collapsed) and identifiers holding one are refused (providers/text.py).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _column_problems() -> list[str]:
    """Values longer than their column: PostgreSQL refuses them (a 500), SQLite keeps them."""
    found = []
    for model in (Call, CallEvent, TranscriptEntry, ReplayKey):
        limited = {
            f.name: f.max_length
            for f in model._meta.get_fields()
            if isinstance(f, CharField) and f.max_length
        }
        for row in model.objects.values("pk", *limited):
            for name, limit in limited.items():
                if isinstance(row[name], str) and len(row[name]) > limit:
                    found.append(
                        f"{model.__name__} {row['pk']} {name} has {len(row[name])} "
                        f"characters, its column {limit}: {row[name][:40]!r}…"
                    )
    return found


def stored_text_problems() -> list[str]:
    """Stored strings holding a NUL, another control character or a lone surrogate, and
    strings longer than their column."""
    found = _column_problems()
    for pk, text in TranscriptEntry.objects.values_list("pk", "text"):
        if _FORBIDDEN.search(text):
            found.append(f"TranscriptEntry {pk} text {text[:80]!r}")
    for pk, payload, key in CallEvent.objects.values_list("pk", "payload", "dedupe_key"):
        for text in [*_strings(payload), key]:
            if _FORBIDDEN.search(text):
                found.append(f"CallEvent {pk} {text[:80]!r}")
    for row in Call.objects.values("pk", "provider_call_id", "from_number", "to_number"):
        for name in ("provider_call_id", "from_number", "to_number"):
            if row[name] and _FORBIDDEN.search(row[name]):
                found.append(f"Call {row['pk']} {name} {row[name][:80]!r}")
    return found


# -- calls under test ----------------------------------------------------------------------


def finished_call(
    make_call: Any, *, provider: str, provider_call_id: str, state: str, **fields: Any
) -> Call:
    """A call that already ended (a terminal state, its end reason and end time)."""
    assert state in TERMINAL
    return make_call(
        provider=provider,
        provider_call_id=provider_call_id,
        state=state,
        end_reason=state,
        ended_at=timezone.now() - timedelta(minutes=1),
        **fields,
    )


LIVE_STATES = sorted(NON_TERMINAL)
END_STATES = sorted(TERMINAL)

# -- posting ---------------------------------------------------------------------------------


def send(client: Client, delivery: Delivery, *, method: str = "POST", **meta: Any) -> Any:
    """The delivery as the server receives it; `meta` adds or overrides WSGI META keys."""
    headers = {**delivery.meta(), **meta}
    return client.generic(
        method,
        delivery.path,
        delivery.body,
        content_type=delivery.content_type,
        secure=delivery.url.startswith("https:"),
        **headers,
    )


def describe(response: Any) -> str:
    return f"{response.status_code} {bytes(response.content[:200])!r}"


# -- strategies ------------------------------------------------------------------------------

#: Characters carrier input must never smuggle into storage, and some look-alikes that are
#: perfectly fine text (tab, newline, non-breaking and zero-width spaces, BOM, RTL mark).
CONTROL_CHARS = [
    "\x00",
    "\x01",
    "\x07",
    "\x08",
    "\x0b",
    "\x1b",
    "\x7f",
    "\x80",
    "\x85",
    "\x9b",
    "\x9f",
]
ODD_CHARS = [
    "\t",
    "\n",
    "\r",
    " ",
    "\u00a0",
    "\u200b",
    "\u2028",
    "\ufeff",
    "\u202e",
    "é",
    "€",
    "𝄞",
    "%",
    "&",
    "=",
    "+",
    "\\",
    '"',
    "<",
    ">",
]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def nasty_text(
    *, max_size: int = 30, surrogates: bool = False, ascii: bool = False, min_size: int = 0
) -> st.SearchStrategy[str]:
    """Short text rich in controls (and, for JSON carriers, lone surrogates); `ascii` keeps
    to code points below 128, C0 controls and DEL included."""
    printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
    if ascii:
        alphabet = st.one_of(
            st.sampled_from([c for c in CONTROL_CHARS + ODD_CHARS if c < "\x80"]), printable
        )
    else:
        special = CONTROL_CHARS + ODD_CHARS + (SURROGATES if surrogates else [])
        alphabet = st.one_of(
            st.sampled_from(special), st.characters(exclude_categories=("Cs",)), printable
        )
    return st.text(alphabet, min_size=min_size, max_size=max_size)


_HUGE_PIECES = ["a", "word ", "9", "\x00", "\x1b[31m", "é", "€", "𝄞", "%", "&=", " ", "\u200b"]


def huge_text(budget: int = HUGE_BUDGET) -> st.SearchStrategy[str]:
    """One repeated piece, up to about `budget` bytes once form-encoded."""

    def repeat(piece: str) -> st.SearchStrategy[str]:
        encoded = len(quote_plus(piece).encode())
        return st.integers(1, max(1, budget // encoded)).map(lambda n: piece * n)

    return st.sampled_from(_HUGE_PIECES).flatmap(repeat)


def garbled(value: str, data: st.DataObject, alphabet: str) -> str:
    """`value` with one character replaced by a different one from `alphabet`."""
    index = data.draw(st.integers(0, len(value) - 1), label="garbled index")
    other = data.draw(
        st.sampled_from([c for c in alphabet if c != value[index]]), label="garbled char"
    )
    return value[:index] + other + value[index + 1 :]


#: Numbers JSON can carry that no float column or JSONB value takes as they are: NaN and
#: the infinities (Python's json writes and reads them), and integers beyond any float.
EDGE_NUMBERS: list[float | int] = [
    float("nan"),
    float("inf"),
    float("-inf"),
    10**400,
    -(10**400),
    2**63,
    -0.0,
    1e308,
]
#: Carrier clock readings at the edges: the last second of year 9999, the first of year 1,
#: and UTC offsets PostgreSQL cannot store (it takes up to ±15:59).
EDGE_ISO_TIMES = [
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00-23:59",
    "2024-01-01T00:00:00+16:00",
    "2024-01-01T00:00:00-23:59",
]
EDGE_RFC2822_TIMES = [
    "Fri, 31 Dec 9999 23:59:59 +0000",
    "Sat, 01 Jan 2000 00:00:00 +2359",
    "Thu, 01 Jan 1970 00:00:00 -1600",
    "Mon, 01 Jan 0001 00:00:00 -2359",
]
#: A caller number with more digits than any column or key built from it can hold.
LONG_NUMBER = "+" + "9" * 250

BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
