"""What every carrier driver shares: the scene, a delivery, the fake REST API, the driver.

A driver plays one carrier against the whole service (tests/carriers/, tests/fuzz/). It
knows the carrier's config block (fake credentials), builds the real adapter on a fake REST
API (an `httpx.MockTransport` handler that records every request and answers as the
carrier would), and produces the *signed* webhook requests the carrier sends in a
normalized situation (ringing, answered, speech, hang-up, inbound call, …). The webhook
URLs come from what the adapter actually handed the carrier (the create request, the
TwiML/XML it sent or replied with), exactly as the real carrier would use them.

One module per carrier (twilio.py, telnyx.py, plivo.py); signatures come from
tests/fakes/signing.py; `tests.fakes.carriers.DRIVERS` names them.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.test import Client

from calls import clock
from calls.carrier import provider_settings
from calls.config import VoiceCallConfig
from calls.models import Call
from providers.base import TelephonyProvider

PUBLIC_HOST = "voice.example.test"
PUBLIC_URL = f"https://{PUBLIC_HOST}/voice/webhook"
OUR_NUMBER = "+15550100000"
CALLEE = "+15555550123"
FRIEND = "+15555550111"  # allowlisted caller
STRANGER = "+15555550999"  # not allowlisted
GREETING = "Hello friend, this is the voice desk."


@dataclass(frozen=True)
class Delivery:
    """One HTTP request a carrier makes to our webhook."""

    label: str
    url: str  # the full URL the carrier requested (the one it signed, for URL-signing carriers)
    body: bytes
    content_type: str
    headers: dict[str, str]  # HTTP header name -> value

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def meta(self) -> dict[str, str]:
        """Headers as Django test-client META keys; Host is the public host by default."""
        meta = {"HTTP_HOST": urlsplit(self.url).netloc}
        for name, value in self.headers.items():
            meta["HTTP_" + name.upper().replace("-", "_")] = value
        return meta


@dataclass
class Exchange:
    delivery: Delivery
    status: int
    body: bytes


@dataclass
class FakeApi:
    """The carrier's REST API: records every request, answers with `respond`."""

    respond: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


class CarrierDriver:
    """What every carrier driver offers the flow tests."""

    name = ""
    #: A rejected inbound caller is refused by the webhook reply itself (no REST hang-up).
    rejects_in_reply = False
    #: The carrier hangs up a notify call by itself: the reply to its report that the
    #: message was said pauses, then hangs up.
    notify_hangs_up_itself = False
    #: Where a notify message is spoken (the `where` of spoken()).
    notify_channel = ""

    def __init__(self) -> None:
        self.api = FakeApi(self._answer)
        self.exchanges: list[Exchange] = []
        # provider call id -> "in-progress" | "completed" | "not-found" | "error"
        self.status_answers: dict[str, str] = {}
        self._sequence = itertools.count()

    # -- set-up ---------------------------------------------------------------------------
    def config(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "provider": self.name,
            "fromNumber": OUR_NUMBER,
            "publicUrl": PUBLIC_URL,
            "inboundPolicy": "allowlist",
            "allowFrom": [FRIEND],
            "inboundGreeting": GREETING,
            "maxConcurrentCalls": 10,
            "staleCallReaperSeconds": 0,
            # A broken flow fails in seconds instead of waiting out the 180 s default.
            "transcriptTimeoutMs": 15000,
            self.name: self.credentials(),
        }
        base.update(overrides)
        return base

    def credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def adapter(self, cfg: VoiceCallConfig) -> TelephonyProvider:
        """The real adapter, built from the runtime's settings, on the fake API."""
        raise NotImplementedError

    def settings(self, cfg: VoiceCallConfig) -> dict[str, Any]:
        return provider_settings(cfg)

    # -- the fake REST API ------------------------------------------------------------------
    def _answer(self, request: httpx.Request) -> httpx.Response:
        raise NotImplementedError

    def new_provider_call_id(self) -> str:
        raise NotImplementedError

    # -- situations -> signed webhook deliveries --------------------------------------------
    def initiated(self, call: Call) -> list[Delivery]:
        return []

    def ringing(self, call: Call) -> list[Delivery]:
        raise NotImplementedError

    def answered(self, call: Call) -> list[Delivery]:
        raise NotImplementedError

    def speech(self, call: Call, text: str, turn_token: str | None) -> list[Delivery]:
        """The caller's words answering the listening of `turn_token`; None = the listening
        the greeting started (no turn)."""
        raise NotImplementedError

    def hangup(self, call: Call, status: str = "completed") -> list[Delivery]:
        raise NotImplementedError

    def inbound(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        raise NotImplementedError

    def inbound_again(self, call_sid: str, from_: str, to: str) -> list[Delivery]:
        """A second, different callback for the same inbound call."""
        raise NotImplementedError

    def status_for_unknown(self, kind: str) -> list[Delivery]:
        """A status callback for a call we do not know. kind: "no-direction" (no direction
        given), "our-call-id" (an outbound call under a callId of ours that does not exist),
        "inbound-ended" (the end of an inbound call from an allowlisted caller we never saw)."""
        raise NotImplementedError

    def oversized_call_id(self) -> list[Delivery]:
        """A validly signed first callback of an inbound call whose carrier call id is 500
        characters long."""
        raise NotImplementedError

    def deep_json(self) -> list[Delivery]:
        """A validly signed JSON body nested deeper than Python's parser recursion limit;
        [] for carriers whose callbacks are never parsed as JSON."""
        return []

    def follow_up(self, client: Client) -> None:
        """What the carrier does by itself after our REST commands and replies, until it has
        nothing left to do: fetch the document a transfer points to (Plivo), and report the
        words it finished saying (`reports`)."""
        while deliveries := self.fetches() + self.reports():
            self.post_all(client, deliveries)

    def fetches(self) -> list[Delivery]:
        """Document fetches the carrier owes after our transfers (each once)."""
        return []

    def reports(self) -> list[Delivery]:
        """The carrier's report of every utterance it finished saying and has not reported
        yet (each once): Twilio and Plivo fetch the <Redirect> after our words, Telnyx sends
        call.speak.ended. Only for answered calls: nothing is said before the answer."""
        raise NotImplementedError

    def report_for(self, call: Call, utterance_id: str) -> list[Delivery]:
        """A validly signed report that `call` finished saying `utterance_id`, whatever we
        sent (an unknown utterance, a duplicate, a call we don't know)."""
        raise NotImplementedError

    def malformed(self) -> list[Delivery]:
        """Validly signed requests whose body is not a usable carrier callback (-> 400)."""
        raise NotImplementedError

    def garbage(self) -> list[Delivery]:
        """Validly signed oddities; none may produce a 500."""
        raise NotImplementedError

    # -- observations ------------------------------------------------------------------------
    def spoken(self) -> list[tuple[str, str]]:
        """(where, text) for every text sent to be spoken: REST commands and webhook replies."""
        raise NotImplementedError

    def hangup_requests(self) -> list[httpx.Request]:
        raise NotImplementedError

    def prompt_sent(self, call: Call, text: str, turn_token: str) -> bool:
        """The turn's prompt went to the carrier together with its listening command."""
        raise NotImplementedError

    def inbound_answered(self, call: Call) -> list[Delivery]:
        """What the carrier sends after our reply to an accepted inbound call's first webhook."""
        raise NotImplementedError

    def greeted(self, call: Call, greeting: str) -> bool:
        """The accepted inbound call was answered and greeted the carrier's way."""
        raise NotImplementedError

    def rejected_in_reply(self, exchange: Exchange) -> bool:
        return False

    def hung_up_in_reply(self, seconds: int) -> bool:
        """The reply to the last report pauses `seconds`, then hangs up (a notify message
        heard, on carriers that run our documents)."""
        return False

    def is_empty_reply(self, exchange: Exchange) -> bool:
        raise NotImplementedError

    def status_requests(self) -> list[str]:
        """Provider call ids the adapter asked the carrier's status of."""
        raise NotImplementedError

    # -- delivery ------------------------------------------------------------------------------
    def post(self, client: Client, delivery: Delivery, **meta: Any) -> Any:
        headers = {**delivery.meta(), **meta}
        response = client.generic(
            "POST",
            delivery.path,
            delivery.body,
            content_type=delivery.content_type,
            secure=delivery.url.startswith("https:"),
            **headers,
        )
        self.exchanges.append(Exchange(delivery, response.status_code, response.content))
        return response

    def post_all(self, client: Client, deliveries: Iterable[Delivery]) -> list[Any]:
        return [self.post(client, delivery) for delivery in deliveries]

    def timestamp(self) -> str:
        return format_datetime(clock.now())
