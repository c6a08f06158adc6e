"""Celery application: the worker runs tasks, beat runs the timer sweep.

docs/design.md, "8. Runtime modes and scale".
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voicecall_project.settings")

app = Celery("voicecall")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
