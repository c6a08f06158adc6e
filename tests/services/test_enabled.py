"""calls/services/enabled.py: the `enabled` switch at run time."""

from __future__ import annotations

from typing import Any

import pytest

from calls.exceptions import ServiceDisabled
from calls.models import Call
from calls.services.dialling import call_initiate
from calls.services.enabled import enabled_check, service_enabled


def test_a_config_without_the_flag_is_enabled(configure: Any) -> None:
    configure({})

    assert service_enabled() is True
    enabled_check()  # no error


def test_enabled_false_refuses_with_the_plugins_string(configure: Any) -> None:
    configure({"enabled": False})

    with pytest.raises(ServiceDisabled) as caught:
        enabled_check()

    assert caught.value.message == "Voice call disabled in plugin config"
    assert caught.value.http_status == 503


@pytest.mark.django_db
def test_a_disabled_service_dials_nothing(configure: Any, mock_carrier: Any) -> None:
    configure({"enabled": False, "provider": "mock"})

    with pytest.raises(ServiceDisabled):
        call_initiate(to="+15555550123", message="Hi")

    assert mock_carrier.sent == []
    assert not Call.objects.exists()
