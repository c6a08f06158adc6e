"""Admin: read-only call history, its actions, inbound policy, allowlist and API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.models import (
    AllowedNumber,
    ApiToken,
    Call,
    CallEvent,
    InboundPolicy,
    TranscriptEntry,
    Turn,
)
from calls.services.inbound import effective_policy
from calls.services.tokens import token_create
from providers.mock import MockProvider

CALLS = reverse("admin:calls_call_changelist")
NUMBERS = reverse("admin:calls_allowednumber_changelist")
NUMBER_ADD = reverse("admin:calls_allowednumber_add")
POLICY_ADD = reverse("admin:calls_inboundpolicy_add")


def _change_url(obj: Any) -> str:
    return reverse(f"admin:calls_{obj._meta.model_name}_change", args=[obj.pk])


def _listed(client: Client, url: str, **params: str) -> set[int]:
    response = client.get(url, params)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def _run_action(client: Client, url: str, action: str, objs: list[Any]) -> list[str]:
    response = client.post(
        url, {"action": action, "_selected_action": [o.pk for o in objs]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


# Call history


def test_call_changelist_lists_calls_with_masked_numbers(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call(to_number="+15555550199")
    response = admin_client.get(CALLS)
    assert response.status_code == 200
    assert str(call.public_id) in response.text
    assert "+1555•••0199" in response.text
    assert "+15555550199" not in response.text


@pytest.mark.parametrize(
    ("field", "value", "other"),
    [
        ("state", "completed", "answered"),
        ("direction", "inbound", "outbound"),
        ("provider", "twilio", "mock"),
    ],
)
def test_call_changelist_filters_by_state_direction_and_provider(
    admin_client: Client, make_call: Any, field: str, value: str, other: str
) -> None:
    wanted = make_call(**{field: value})
    make_call(**{field: other})
    assert _listed(admin_client, CALLS, **{f"{field}__exact": value}) == {wanted.pk}


def test_call_search_finds_a_call_by_number(admin_client: Client, make_call: Any) -> None:
    wanted = make_call(from_number="+15550007777")
    make_call()
    assert _listed(admin_client, CALLS, q="+15550007777") == {wanted.pk}


def test_call_search_finds_a_call_by_its_full_call_id(admin_client: Client, make_call: Any) -> None:
    wanted = make_call(provider_call_id="CA-one")
    make_call(provider_call_id="CA-two")
    assert _listed(admin_client, CALLS, q=str(wanted.public_id)) == {wanted.pk}


def test_call_search_finds_a_call_by_provider_call_id(admin_client: Client, make_call: Any) -> None:
    wanted = make_call(provider_call_id="CA-find-me")
    make_call(provider_call_id="CA-other")
    assert _listed(admin_client, CALLS, q="CA-find-me") == {wanted.pk}


def test_call_change_view_shows_events_transcript_and_metadata_read_only(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call(metadata={"initialMessage": "hi there"})
    CallEvent.objects.create(call=call, type="call.answered", dedupe_key="evt-answered-1")
    TranscriptEntry.objects.create(call=call, speaker="user", text="please call me back")
    response = admin_client.get(_change_url(call))
    assert response.status_code == 200
    assert "evt-answered-1" in response.text
    assert "please call me back" in response.text
    assert "<pre>{\n  &quot;initialMessage&quot;: &quot;hi there&quot;\n}</pre>" in response.text
    assert 'name="_save"' not in response.text


def test_call_change_view_shows_each_turns_stages(admin_client: Client, make_call: Any) -> None:
    call = make_call()
    start = timezone.now()
    Turn.objects.create(
        call=call,
        index=1,
        initiator="caller",
        transcript_at=start,
        reply_ready_at=start + timedelta(milliseconds=420),
        interrupted=True,
    )
    response = admin_client.get(_change_url(call))
    assert response.status_code == 200
    assert "<td>420</td>" in response.text  # the turns table's reply column


def test_call_change_post_is_refused(admin_client: Client, make_call: Any) -> None:
    call = make_call()
    response = admin_client.post(_change_url(call), {"state": "completed"})
    assert response.status_code == 403
    call.refresh_from_db()
    assert call.state == "answered"


def test_call_add_and_delete_are_refused(admin_client: Client, make_call: Any) -> None:
    call = make_call()
    assert admin_client.get(reverse("admin:calls_call_add")).status_code == 403
    delete_url = reverse("admin:calls_call_delete", args=[call.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Call.objects.filter(pk=call.pk).exists()


def test_end_selected_calls_hangs_up_a_live_call_through_the_service(
    admin_client: Client, make_call: Any, mock_carrier: MockProvider
) -> None:
    call = make_call(state="active")
    notes = _run_action(admin_client, CALLS, "end_calls", [call])
    call.refresh_from_db()
    assert call.state == "hangup-bot"
    assert ("hang_up", {"provider_call_id": call.provider_call_id}) in mock_carrier.sent
    assert "Ended 1 call(s)." in notes


def test_end_selected_calls_reports_an_unconnected_call_without_changing_it(
    admin_client: Client, make_call: Any, mock_carrier: MockProvider
) -> None:
    call = make_call(state="initiated", provider_call_id=None)
    notes = _run_action(admin_client, CALLS, "end_calls", [call])
    call.refresh_from_db()
    assert call.state == "initiated"
    assert notes == [f"{call.public_id}: Call not connected"]
    assert mock_carrier.sent == []


def test_view_only_staff_can_browse_calls_but_not_end_them(client: Client, make_call: Any) -> None:
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    client.force_login(user)
    call = make_call()
    response = client.get(CALLS)
    assert response.status_code == 200
    assert str(call.public_id) in response.text
    assert "end_calls" not in response.text


# Inbound policy


def test_inbound_policy_changelist_shows_the_config_policy_when_none_is_set(
    admin_client: Client, configure: Any
) -> None:
    configure({"inboundPolicy": "allowlist"})
    response = admin_client.get(reverse("admin:calls_inboundpolicy_changelist"))
    assert "Effective policy: allowlist" in response.text


def test_inbound_policy_edit_persists_and_becomes_effective(admin_client: Client) -> None:
    row = InboundPolicy.objects.create()
    response = admin_client.post(_change_url(row), {"policy": "open", "greeting": "Welcome"})
    assert response.status_code == 302
    assert effective_policy() == ("open", "Welcome")
    listing = admin_client.get(reverse("admin:calls_inboundpolicy_changelist"))
    assert "Effective policy: open" in listing.text


def test_inbound_policy_offers_use_config_as_the_blank_choice(admin_client: Client) -> None:
    assert '<option value="" selected>use config</option>' in admin_client.get(POLICY_ADD).text


def test_inbound_policy_second_add_is_refused(admin_client: Client) -> None:
    response = admin_client.post(POLICY_ADD, {"policy": "open", "greeting": ""})
    assert response.status_code == 302
    assert admin_client.post(POLICY_ADD, {"policy": "disabled", "greeting": ""}).status_code == 403
    assert InboundPolicy.objects.count() == 1


# Allowlist


def _add_number(client: Client, number: str) -> Any:
    return client.post(NUMBER_ADD, {"number": number, "label": "desk", "note": "", "enabled": "on"})


def test_allowed_number_add_rejects_a_non_e164_number(admin_client: Client) -> None:
    response = _add_number(admin_client, "555-0100")
    assert response.status_code == 200
    assert response.text.count("Expected E.164 format") == 1
    assert not AllowedNumber.objects.exists()


def test_allowed_number_add_creates_an_admin_row(admin_client: Client) -> None:
    assert _add_number(admin_client, "+15550002222").status_code == 302
    row = AllowedNumber.objects.get()
    assert (row.number, row.label, row.source) == ("+15550002222", "desk", "admin")


def test_allowed_number_add_rejects_a_duplicate_admin_number(admin_client: Client) -> None:
    AllowedNumber.objects.create(number="+15550002222", source="admin")
    response = _add_number(admin_client, "+15550002222")
    assert response.status_code == 200
    assert "already exists" in response.text
    assert AllowedNumber.objects.count() == 1


def test_config_allow_from_rows_appear_and_are_read_only(
    admin_client: Client, configure: Any
) -> None:
    configure({"allowFrom": ["+15550001111"]})
    assert "+15550001111" in admin_client.get(NUMBERS).text
    row = AllowedNumber.objects.get(number="+15550001111")
    assert row.source == "config"
    view = admin_client.get(_change_url(row))
    assert view.status_code == 200
    assert 'name="_save"' not in view.text
    assert admin_client.post(_change_url(row), {"number": "+15550009999"}).status_code == 403
    delete_url = reverse("admin:calls_allowednumber_delete", args=[row.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    row.refresh_from_db()
    assert row.number == "+15550001111"


def test_config_rows_survive_the_bulk_delete_action(admin_client: Client, configure: Any) -> None:
    configure({"allowFrom": ["+15550001111"]})
    admin_client.get(NUMBERS)
    row = AllowedNumber.objects.get(source="config")
    admin_client.post(
        NUMBERS, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert AllowedNumber.objects.filter(pk=row.pk).exists()


# API tokens


def test_revoke_selected_tokens_sets_revoked_at(admin_client: Client) -> None:
    token = token_create(name="ci").token
    notes = _run_action(
        admin_client, reverse("admin:calls_apitoken_changelist"), "revoke_tokens", [token]
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "Revoked 1 token(s)." in notes


def test_tokens_cannot_be_added_in_the_admin(admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:calls_apitoken_add")).status_code == 403
    assert not ApiToken.objects.exists()


# First impressions (docs/operations.md, "Live view"): what the list and a refused call show


def test_a_refused_inbound_call_reads_as_rejected_and_why(
    admin_client: Client, make_call: Any
) -> None:
    refused = make_call(
        direction="inbound",
        state="hangup-bot",
        end_reason="hangup-bot",
        metadata={"rejectionReason": "inbound-policy", "screen": "not allowlisted"},
    )
    listing = admin_client.get(CALLS).text
    assert ">rejected<" in listing
    page = admin_client.get(_change_url(refused)).text
    assert "rejected by the inbound policy: not allowlisted" in page


def test_the_call_list_shows_a_short_id_with_the_full_one_in_its_tooltip(
    admin_client: Client, make_call: Any
) -> None:
    call = make_call()
    full = str(call.public_id)
    listing = admin_client.get(CALLS).text
    assert f'<span title="{full}">{full[:8]}…</span>' in listing


def test_view_site_opens_the_live_view(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).text
    assert 'href="/admin/calls/live/">View site</a>' in page
    assert admin_client.get("/admin/calls/live/").status_code == 200
