"""Retention (calls/services/retention.py): what a purge deletes, what it never touches, and
every way it is run — the service, `voicecall purge`, the daily beat task, the admin line.

docs/architecture.md, "Retention and redaction".
"""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from calls import tasks
from calls.config import ConfigError, parse_config, reset_config
from calls.models import Call, CallEvent, ContinueOperation, TranscriptEntry, Turn
from calls.services import retention
from calls.services.retention import retention_purge, retention_summary

pytestmark = pytest.mark.django_db

ZERO = {
    "calls": 0,
    "events": 0,
    "turns": 0,
    "transcriptLines": 0,
    "eventTranscripts": 0,
    "continueResults": 0,
}


def history(make_call: Any, *, ended_days_ago: float | None, state: str = "completed") -> Call:
    """A call with two lines, a speech event, a plain event, a turn and a finished
    `continue` operation; ended that many days ago (None: still live)."""
    now = Call.objects.model._meta.get_field("started_at").default()
    ended = None if ended_days_ago is None else now - timedelta(days=ended_days_ago)
    call = make_call(state=state, ended_at=ended)
    for speaker, text in (("bot", "Hello"), ("user", "Hi there")):
        TranscriptEntry.objects.create(call=call, speaker=speaker, text=text)
    CallEvent.objects.create(
        call=call, type="call.speech", dedupe_key="s1", payload={"transcript": "Hi", "isFinal": 1}
    )
    CallEvent.objects.create(call=call, type="call.answered", dedupe_key="a1", payload={})
    Turn.objects.create(call=call, index=0, initiator="caller")
    ContinueOperation.objects.create(
        call=call, message="Ready?", status="done", result={"transcript": "yes"}
    )
    return call


def test_without_retention_nothing_is_purged(make_call: Any) -> None:
    history(make_call, ended_days_ago=400)
    counts = retention_purge().as_dict()
    assert counts == {"dryRun": False, "transcriptDays": None, "callDays": None, **ZERO}
    assert Call.objects.count() == 1 and TranscriptEntry.objects.count() == 2


def test_call_days_deletes_old_ended_calls_with_everything_recorded(
    configure: Any, make_call: Any
) -> None:
    configure({"retention": {"callDays": 30}})
    old = history(make_call, ended_days_ago=31)
    recent = history(make_call, ended_days_ago=29)

    counts = retention_purge().as_dict()

    assert counts == {
        "dryRun": False,
        "transcriptDays": None,
        "callDays": 30,
        **ZERO,
        "calls": 1,
        "events": 2,
        "turns": 1,
        "transcriptLines": 2,
        "continueResults": 1,
    }
    assert list(Call.objects.all()) == [recent]
    assert not CallEvent.objects.filter(call_id=old.pk).exists()
    assert TranscriptEntry.objects.filter(call=recent).count() == 2


def test_transcript_days_deletes_the_words_and_keeps_the_call(
    configure: Any, make_call: Any
) -> None:
    configure({"retention": {"transcriptDays": 7}})
    old = history(make_call, ended_days_ago=8)
    recent = history(make_call, ended_days_ago=1)

    counts = retention_purge().as_dict()

    assert counts == {
        "dryRun": False,
        "transcriptDays": 7,
        "callDays": None,
        **ZERO,
        "transcriptLines": 2,
        "eventTranscripts": 1,
        "continueResults": 1,
    }
    assert Call.objects.count() == 2
    assert not TranscriptEntry.objects.filter(call=old).exists()
    assert CallEvent.objects.get(call=old, type="call.speech").payload == {"isFinal": 1}
    assert CallEvent.objects.filter(call=old).count() == 2  # the timeline stays
    assert TranscriptEntry.objects.filter(call=recent).count() == 2


def test_zero_days_means_every_ended_call_and_live_calls_are_never_touched(
    configure: Any, make_call: Any
) -> None:
    configure({"retention": {"transcriptDays": 0, "callDays": 0}})
    live = [
        history(make_call, ended_days_ago=None, state=state)
        for state in ("initiated", "ringing", "answered", "listening", "speaking")
    ]
    # A live call whose ended_at was somehow set is still live: the state decides.
    live.append(history(make_call, ended_days_ago=900, state="active"))
    ended = history(make_call, ended_days_ago=0.001, state="hangup-user")

    counts = retention_purge().as_dict()

    assert counts["calls"] == 1
    assert set(Call.objects.all()) == set(live)
    assert not Call.objects.filter(pk=ended.pk).exists()
    assert TranscriptEntry.objects.count() == 2 * len(live)
    assert ContinueOperation.objects.count() == len(live)


def test_a_dry_run_counts_the_same_and_deletes_nothing(configure: Any, make_call: Any) -> None:
    configure({"retention": {"transcriptDays": 7, "callDays": 30}})
    history(make_call, ended_days_ago=40)
    history(make_call, ended_days_ago=10)
    rows = (Call, CallEvent, TranscriptEntry, Turn, ContinueOperation)
    before = [model.objects.count() for model in rows]
    payloads = list(CallEvent.objects.values_list("payload", flat=True))

    dry = retention_purge(dry_run=True).as_dict()

    assert [model.objects.count() for model in rows] == before
    assert list(CallEvent.objects.values_list("payload", flat=True)) == payloads
    real = retention_purge().as_dict()
    assert {**dry, "dryRun": False} == real
    assert real["calls"] == 1 and real["transcriptLines"] == 4 and real["eventTranscripts"] == 1


def test_deletes_run_in_batches(
    configure: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 2)
    configure({"retention": {"transcriptDays": 0}})
    calls = [history(make_call, ended_days_ago=1) for _ in range(3)]

    with CaptureQueriesContext(connection) as queries:
        counts = retention_purge().as_dict()

    def statements(prefix: str) -> int:
        return sum(q["sql"].replace('"', "").startswith(prefix) for q in queries.captured_queries)

    # 6 lines in 3 deletes, 3 event payloads in 2 updates: no statement over BATCH rows.
    assert (counts["transcriptLines"], counts["eventTranscripts"]) == (6, 3)
    assert statements("DELETE FROM calls_transcriptentry") == 3
    assert statements("UPDATE calls_callevent") == 2
    assert not TranscriptEntry.objects.filter(call__in=calls).exists()


def test_the_admin_and_the_summary_show_the_settings_in_force(
    configure: Any, admin_client: Client
) -> None:
    assert retention_summary() == (
        "Retention: transcripts kept for ever; calls kept for ever; redacted when stored: nothing"
    )
    configure({"retention": {"transcriptDays": 7, "callDays": 0, "redact": ["phone", "card"]}})
    line = (
        "Retention: transcripts 7 days after the call ended; calls 0 days after the call "
        "ended; redacted when stored: phone, card"
    )
    assert retention_summary() == line
    response = admin_client.get(reverse("admin:calls_call_changelist"))
    assert line in response.text


# --- voicecall purge and the beat task ---------------------------------------------------


def purge(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command("voicecall", "purge", *args, stdout=out)
    return json.loads(out.getvalue())


def test_purge_prints_json_counts_and_dry_run_deletes_nothing(
    configure: Any, make_call: Any
) -> None:
    configure({"retention": {"callDays": 1}})
    history(make_call, ended_days_ago=2)

    dry = purge("--dry-run")
    assert dry["dryRun"] is True and dry["calls"] == 1
    assert Call.objects.count() == 1
    done = purge()
    assert done == {**dry, "dryRun": False}
    assert Call.objects.count() == 0


def test_purge_with_a_bad_config_exits_non_zero_naming_the_key(
    settings: Any, tmp_path: Any, make_call: Any
) -> None:
    history(make_call, ended_days_ago=2)
    path = tmp_path / "voicecall.json"
    path.write_text(json.dumps({"retention": {"callDays": 1, "redact": ["ssn"]}}))
    settings.VOICECALL_CONFIG = str(path)
    reset_config()

    with pytest.raises(CommandError) as caught:
        purge()

    # A bare config file: the key as the file spells it.
    assert "Invalid voice-call config: retention.redact[0] must be one of" in str(caught.value)
    assert Call.objects.count() == 1


@pytest.mark.parametrize(
    ("retention_block", "error"),
    [
        ({"callDays": -1}, "retention.callDays must be an integer greater than or equal to 0"),
        ({"transcriptDays": "7"}, "retention.transcriptDays must be an integer greater than"),
        ({"redact": "phone"}, "retention.redact must be a list"),
        ({"redact": ["email", "ssn"]}, 'retention.redact[1] must be one of "phone", "email"'),
        ({"keepForever": True}, "retention.keepForever is not a recognized key"),
    ],
)
def test_a_bad_retention_block_is_refused_naming_the_key(
    retention_block: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"retention": retention_block}, {})
    assert f"plugins.entries.voice-call.config.{error}" in str(caught.value)


def test_beat_runs_the_purge_daily_and_the_task_returns_the_counts(
    configure: Any, make_call: Any
) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["voicecall-retention"]
    assert entry["task"] == "calls.tasks.purge_history"
    schedule = entry["schedule"]
    assert (schedule.hour, schedule.minute) == ({3}, {30})  # once a day
    configure({"retention": {"callDays": 0}})
    history(make_call, ended_days_ago=1)

    counts = tasks.purge_history.delay().get()

    assert counts["calls"] == 1 and counts["dryRun"] is False
    assert Call.objects.count() == 0
