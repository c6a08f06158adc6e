"""What the services count (calls/metrics.py): calls ended once, and only when the ending is
committed; failed carrier requests. Turn stages: tests/services/test_turn_records.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from calls.exceptions import CarrierFailed
from calls.models import Call
from calls.services.actions import call_end
from calls.services.lifecycle import call_finalize
from providers.errors import ProviderError
from tests.metrics_samples import sample

pytestmark = pytest.mark.django_db

ENDED = {"provider": "mock", "direction": "outbound", "mode": "conversation"}


def test_an_ending_rolled_back_is_not_counted(
    make_call: Any, django_capture_on_commit_callbacks: Any
) -> None:
    call = make_call(state="answered")
    labels = {**ENDED, "end_reason": "completed"}
    before = sample("voicecall_calls_total", **labels)

    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            call_finalize(call=call, reason="completed")
            raise RuntimeError("crash before the commit")
    assert sample("voicecall_calls_total", **labels) == before

    with django_capture_on_commit_callbacks(execute=True):
        assert call_finalize(call=call, reason="completed")
        assert not call_finalize(call=call, reason="completed")  # ended already: not twice
    assert sample("voicecall_calls_total", **labels) == before + 1


def test_a_failed_hang_up_is_a_provider_error(
    mock_carrier: Any, make_call: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = make_call(state="answered")

    def refuse(target: Any) -> None:
        raise ProviderError("carrier busy")

    monkeypatch.setattr(mock_carrier, "hang_up", refuse)
    before = sample("voicecall_provider_errors_total", provider="mock", kind="hangup")

    with pytest.raises(CarrierFailed):
        call_end(call_id=call.call_id)

    assert sample("voicecall_provider_errors_total", provider="mock", kind="hangup") == before + 1
    assert not Call.objects.get(pk=call.pk).is_terminal
