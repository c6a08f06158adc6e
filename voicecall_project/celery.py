"""Celery application: the worker runs tasks, beat runs the timer sweep.

docs/design.md, "8. Runtime modes and scale".
"""

from __future__ import annotations

import os
from logging.config import dictConfig
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicecall_project.settings")

app = Celery("voicecall")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _log_like_the_server(**kwargs: Any) -> None:
    """A worker logs through settings.LOGGING (LOG_FORMAT, masked numbers), not Celery's own
    format: with a receiver here Celery leaves the root logger alone."""
    dictConfig(settings.LOGGING)
