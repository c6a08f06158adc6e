"""Telnyx Call Control v2 (REST commands, Ed25519-signed JSON webhooks)."""

from __future__ import annotations

from providers.telnyx.provider import TelnyxProvider

__all__ = ["TelnyxProvider"]
