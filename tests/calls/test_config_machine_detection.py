"""`outbound.machineDetection` in the config: its default, its values, its error."""

from __future__ import annotations

import pytest

from calls.config import PLUGIN_PATH, ConfigError, parse_config


def test_machine_detection_is_off_by_default() -> None:
    assert parse_config({}, {}).outbound.machine_detection == "off"


@pytest.mark.parametrize("mode", ["off", "detect", "hangup", "leaveMessage"])
def test_each_machine_detection_mode_is_accepted(mode: str) -> None:
    cfg = parse_config({"outbound": {"machineDetection": mode}}, {})
    assert cfg.outbound.machine_detection == mode


@pytest.mark.parametrize("value", ["on", "leave_message", "Hangup", True, 1, ["detect"]])
def test_an_unknown_machine_detection_mode_stops_startup_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"outbound": {"machineDetection": value}}, {})
    assert info.value.errors == [
        f"{PLUGIN_PATH}.outbound.machineDetection must be one of "
        '"off", "detect", "hangup", "leaveMessage"'
    ]


def test_the_mock_verdict_delay_is_a_config_key() -> None:
    cfg = parse_config({"mock": {"machineDetectionDelayMs": 5}}, {})
    assert cfg.mock["machineDetectionDelayMs"] == 5
