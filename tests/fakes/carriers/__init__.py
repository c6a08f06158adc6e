"""Carrier drivers, one module per carrier on a shared base (tests/fakes/carriers/base.py)."""

from __future__ import annotations

from tests.fakes.carriers.base import CarrierDriver
from tests.fakes.carriers.plivo import PlivoDriver
from tests.fakes.carriers.telnyx import TelnyxDriver
from tests.fakes.carriers.twilio import TwilioDriver

DRIVERS: dict[str, type[CarrierDriver]] = {
    "twilio": TwilioDriver,
    "telnyx": TelnyxDriver,
    "plivo": PlivoDriver,
}
