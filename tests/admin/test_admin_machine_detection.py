"""Admin: the answering-machine verdict in the call history (filter and detail)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

CALLS = reverse("admin:calls_call_changelist")

pytestmark = pytest.mark.django_db


def test_the_call_list_filters_by_who_answered(admin_client: Client, make_call: Any) -> None:
    machine = make_call(answered_by="machine", machine_detection_ms=2400)
    make_call(answered_by="human")
    make_call()
    response = admin_client.get(CALLS, {"answered_by": "machine"})
    assert response.status_code == 200
    assert {c.pk for c in response.context["cl"].result_list} == {machine.pk}


def test_the_call_detail_shows_the_verdict_read_only(admin_client: Client, make_call: Any) -> None:
    call = make_call(answered_by="fax", machine_detection_ms=3120)
    response = admin_client.get(reverse("admin:calls_call_change", args=[call.pk]))
    assert response.status_code == 200
    assert "Answering-machine detection" in response.text
    assert "fax" in response.text and "3120" in response.text
    assert 'name="answered_by"' not in response.text  # shown, never editable
