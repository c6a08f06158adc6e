"""Time in one seam, so timer and wait tests advance a clock instead of sleeping."""

from __future__ import annotations

import time
from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def sleep(seconds: float) -> None:
    time.sleep(seconds)
