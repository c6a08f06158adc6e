"""The calls app: call history, inbound policy, API, webhooks and CLI."""

from __future__ import annotations

from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Voice calls"
