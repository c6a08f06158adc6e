"""lifecycle.plausible_time: carrier timestamps are kept when they could be true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from calls.services.lifecycle import plausible_time


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))),
        datetime(1999, 12, 31, tzinfo=UTC),
    ],
)
def test_impossible_stamps_give_our_clock(fake_clock: Any, stamp: datetime) -> None:
    assert plausible_time(stamp) == fake_clock.now()


def test_late_and_slightly_early_stamps_are_kept(fake_clock: Any) -> None:
    late = fake_clock.now() - timedelta(days=300)
    skewed = fake_clock.now() + timedelta(seconds=5)
    assert plausible_time(late) == late and plausible_time(skewed) == skewed
    assert plausible_time(None) == fake_clock.now()
