"""Phone numbers in the admin: shown in full only to users with calls.view_numbers; masked on
every page for everyone else (docs/security.md, "Admin")."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from calls.models import AllowedNumber, CallEvent, TranscriptEntry

CALLER, OURS, SPOKEN = "+15550001234", "+15550009876", "+15550004242"
NUMBERS = reverse("admin:calls_allowednumber_changelist")
NUMBER_ADD = reverse("admin:calls_allowednumber_add")


def _staff(client: Client, *codenames: str) -> User:
    user = User.objects.create_user("desk", password="x", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return user


@pytest.fixture
def call_with_numbers(make_call: Any) -> Any:
    call = make_call(
        direction="inbound",
        from_number=CALLER,
        to_number=OURS,
        metadata={"numberRouteKey": OURS, "note": f"forwarded from {CALLER}"},
    )
    TranscriptEntry.objects.create(call=call, speaker="user", text=f"Call me back on {SPOKEN}")
    CallEvent.objects.create(
        call=call,
        type="call.initiated",
        dedupe_key="mock:c-1:initiated",
        payload={"from": CALLER, "to": OURS},
    )
    return call


def _call_page(client: Client, call: Any) -> str:
    response = client.get(reverse("admin:calls_call_change", args=[call.pk]))
    assert response.status_code == 200
    return response.text


def test_without_the_permission_the_call_page_shows_no_full_number(
    client: Client, call_with_numbers: Any
) -> None:
    _staff(client, "view_call")
    page = _call_page(client, call_with_numbers)
    # Fields, metadata, the conversation and the event timeline: every one masked.
    for number in (CALLER, OURS, SPOKEN):
        assert number not in page
    assert "+1555•••1234" in page and "+1555•••9876" in page and "+1555•••4242" in page
    assert "Call me back on +1555•••4242" in page


def test_with_the_permission_the_call_page_shows_the_numbers(
    client: Client, call_with_numbers: Any
) -> None:
    _staff(client, "view_call", "view_numbers")
    page = _call_page(client, call_with_numbers)
    for number in (CALLER, OURS, SPOKEN):
        assert number in page


def test_the_call_list_masks_numbers_even_when_searched_by_one(
    client: Client, call_with_numbers: Any
) -> None:
    _staff(client, "view_call")
    response = client.get(reverse("admin:calls_call_changelist"), {"q": CALLER})
    assert response.status_code == 200
    assert str(call_with_numbers.public_id) in response.text
    # The search box echoes what the user typed; the rows show masked numbers only.
    rows = response.text.split('id="result_list"', 1)[1]
    assert CALLER not in rows and OURS not in rows
    assert "+1555•••1234" in rows


def test_the_allowlist_is_masked_and_read_only_without_the_permission(
    client: Client, db: Any
) -> None:
    row = AllowedNumber.objects.create(number=CALLER, label="desk", source="admin")
    _staff(client, "view_allowednumber", "add_allowednumber", "change_allowednumber")

    listing = client.get(NUMBERS)
    assert listing.status_code == 200
    assert CALLER not in listing.text and "+1555•••1234" in listing.text
    detail = client.get(reverse("admin:calls_allowednumber_change", args=[row.pk]))
    assert detail.status_code == 200  # viewable, masked, and not editable
    assert CALLER not in detail.text and 'name="number"' not in detail.text
    # Adding or changing a number one may not see is refused.
    assert client.get(NUMBER_ADD).status_code == 403
    changed = client.post(
        reverse("admin:calls_allowednumber_change", args=[row.pk]),
        {"number": "+15550007777", "label": "x", "note": "", "enabled": "on"},
    )
    assert changed.status_code == 403
    row.refresh_from_db()
    assert row.number == CALLER


def test_with_the_permission_the_allowlist_is_managed_in_full(client: Client, db: Any) -> None:
    AllowedNumber.objects.create(number=CALLER, label="desk", source="admin")
    _staff(client, "view_allowednumber", "add_allowednumber", "view_numbers")

    assert CALLER in client.get(NUMBERS).text
    added = client.post(
        NUMBER_ADD, {"number": "+15550002222", "label": "desk", "note": "", "enabled": "on"}
    )
    assert added.status_code == 302
    assert AllowedNumber.objects.filter(number="+15550002222", source="admin").exists()
