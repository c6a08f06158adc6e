"""Plivo Voice API + Plivo XML carrier adapter."""

from __future__ import annotations

from providers.plivo.provider import PlivoProvider

__all__ = ["PlivoProvider"]
