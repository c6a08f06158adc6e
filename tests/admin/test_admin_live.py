"""The admin's live view page, the call page's conversation, timeline and turns, and the call
list's latency percentiles (calls/admin_live.py, templates/admin/calls/)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.models import CallEvent, TranscriptEntry, Turn

pytestmark = pytest.mark.django_db

LIVE = "/admin/calls/live/"
CALLS = reverse("admin:calls_call_changelist")


def _page_json(html: str, element_id: str) -> Any:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html)
    assert found, html
    return json.loads(found.group(1))


def _turn(call: Any, index: int, *, reply_ms: int, total_ms: int, ago: timedelta) -> Turn:
    start = timezone.now() - ago
    return Turn.objects.create(
        call=call,
        index=index,
        initiator="caller",
        caller_stopped_at=start,
        transcript_at=start,
        reply_ready_at=start + timedelta(milliseconds=reply_ms),
        first_audio_at=start + timedelta(milliseconds=total_ms),
        created_at=start,
    )


# The live view


def test_the_live_view_sends_a_visitor_to_sign_in(client: Client) -> None:
    response = client.get(LIVE)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/admin/calls/live/")


def test_the_live_view_is_refused_to_a_signed_in_user_who_is_not_staff(client: Client) -> None:
    client.force_login(User.objects.create_user("someone", password="x"))
    assert client.get(LIVE).status_code == 302  # the admin's login page, as for everyone


def test_the_live_view_is_forbidden_to_staff_who_may_not_view_calls(client: Client) -> None:
    client.force_login(User.objects.create_user("desk", password="x", is_staff=True))
    assert client.get(LIVE).status_code == 403


def test_the_live_view_lists_active_calls_masked_with_their_latest_turn(
    client: Client, make_call: Any
) -> None:
    user = User.objects.create_user("desk", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)
    live = make_call(state="listening", to_number="+15555550199")
    make_call(state="completed")
    _turn(live, 1, reply_ms=300, total_ms=900, ago=timedelta(seconds=30))
    _turn(live, 2, reply_ms=200, total_ms=650, ago=timedelta(seconds=5))
    TranscriptEntry.objects.create(call=live, speaker="bot", text="We open at nine.")

    response = client.get(LIVE)

    assert response.status_code == 200
    assert "+15555550199" not in response.text
    (row,) = _page_json(response.text, "live-calls-data")
    assert row["callId"] == live.call_id
    assert (row["state"], row["to"], row["latencyMs"]) == ("listening", "+1555•••0199", 650)
    assert row["lastLine"] == {"speaker": "bot", "text": "We open at nine.", "interrupted": False}
    assert row["url"] == reverse("admin:calls_call_change", args=[live.pk])
    assert 'data-socket="/admin/live/"' in response.text
    assert "calls/live.js" in response.text


def test_the_call_list_links_to_the_live_view(admin_client: Client) -> None:
    assert f'href="{LIVE}"' in admin_client.get(CALLS).text


# The call page


def test_the_call_page_shows_the_transcript_as_a_conversation(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call()
    TranscriptEntry.objects.create(call=call, speaker="bot", text="Hello, this is Ada.")
    TranscriptEntry.objects.create(call=call, speaker="user", text="Hi Ada")
    TranscriptEntry.objects.create(call=call, speaker="bot", text="Our hours", interrupted=True)

    html = admin_client.get(reverse("admin:calls_call_change", args=[call.pk])).text

    lines = re.findall(
        r'<li class="(bot|user)( interrupted)?">\s*<span class="who">(\w+)</span>\s*'
        r'<span class="text">([^<]*)</span>',
        html,
    )
    assert lines == [
        ("bot", "", "Bot", "Hello, this is Ada."),
        ("user", "", "Caller", "Hi Ada"),
        ("bot", " interrupted", "Bot", "Our hours"),
    ]
    assert '<span class="flag" title="The caller talked over it' in html


def test_the_call_page_shows_the_event_timeline_in_order(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call()
    now = timezone.now()
    CallEvent.objects.create(
        call=call, type="call.answered", dedupe_key="evt-2", created_at=now, payload={}
    )
    CallEvent.objects.create(
        call=call,
        type="call.ringing",
        dedupe_key="evt-1",
        created_at=now - timedelta(seconds=2),
        payload={"providerCallId": "CA1"},
    )

    html = admin_client.get(reverse("admin:calls_call_change", args=[call.pk])).text

    timeline = html[html.index('id="call-timeline"') :]
    assert timeline.index("call.ringing") < timeline.index("call.answered")
    assert "providerCallId: CA1" in timeline


def test_the_call_page_shows_each_turns_stages_in_ms(admin_client: Client, make_call: Any) -> None:
    call = make_call()
    _turn(call, 1, reply_ms=420, total_ms=980, ago=timedelta(seconds=1))

    html = admin_client.get(reverse("admin:calls_call_change", args=[call.pk])).text

    turns = html[html.index('id="call-turns"') :]
    header = re.findall(r"<th>([^<]*)</th>", turns.split("</thead>")[0])
    first_row = re.findall(r"<td>([^<]*)</td>", turns.split("<tbody>")[1].split("</tr>")[0])
    stages = dict(zip(header, first_row, strict=True))
    assert (stages["reply"], stages["firstAudio"], stages["total"]) == ("420", "560", "980")
    assert (stages["#"], stages["Started by"], stages["played"]) == ("1", "caller", "—")


# The call list's percentiles


def test_the_call_list_summarizes_the_last_day_of_turns_per_stage(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call()
    for index, total in enumerate((100, 200, 300, 400), start=1):
        _turn(call, index, reply_ms=50, total_ms=total, ago=timedelta(hours=1))
    _turn(call, 5, reply_ms=50, total_ms=9000, ago=timedelta(hours=30))  # too old

    html = admin_client.get(CALLS).text

    summary = html[html.index('id="latency-summary"') :].split("</table>")[0]
    assert "4 turns" in summary
    total_row = re.search(r"<td>total</td>((?:\s*<td>[^<]*</td>){4})", summary)
    assert total_row, summary
    assert re.findall(r"<td>([^<]*)</td>", total_row.group(1)) == ["200", "400", "400", "4"]
