"""Twilio Programmable Voice (REST 2010-04-01, TwiML, X-Twilio-Signature webhooks)."""

from __future__ import annotations

from providers.twilio.provider import TwilioProvider
from providers.twilio.signature import explain as explain_signature

__all__ = ["TwilioProvider", "explain_signature"]
