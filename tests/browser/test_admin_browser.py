"""The admin in a real browser: headless Chromium from the system packages, driven by
Playwright, against a real `voicecall serve` (docs/operations.md, "Live view").

Nothing is downloaded at test time: Playwright starts the distribution's `chromium`
(`apt-get install chromium`; .ci/run installs it). Without it these tests are skipped.

The pages' screenshots go to $VOICECALL_SCREENSHOT_DIR when it is set (the README's come
from `VOICECALL_SCREENSHOT_DIR=docs/images`), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve import ROOT, Server, _token, _wait, serving
from tests.fakes.loopback import FakeVendors

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)"),
]

PASSWORD = "e2e-password"  # tests/e2e/test_serve.py's DJANGO_SUPERUSER_PASSWORD
GREETING = "Hello, this is Ada from Acme Dental."
CALLER_SAYS = "Are you open on Saturday?"
MODEL_REPLY = "We are open on Saturday until noon."
# Playwright's waits for page state; generous, since they end as soon as the state is there.
WAIT_MS = 60_000
ENDED = re.compile(r"^(hangup-user|hangup-bot|completed)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser")
    srv = Server(tmp)
    vendors = FakeVendors(account_sid="AC" + "0" * 32, reply=MODEL_REPLY)
    vendors.start()
    # The responder answers the caller on a server thread in the embedded default; with
    # REDIS_URL (.ci/run's second stage) it would need a Celery worker, so it stays off.
    responder = (
        ""
        if os.environ.get("REDIS_URL")
        else f'responseModel: "openai/gpt-4o-mini", responseBaseUrl: "{vendors.origin}/v1",'
    )
    (tmp / "voicecall.json5").write_text(f"""{{
      provider: "mock",
      toNumber: "+15555550123",
      inboundPolicy: "open",
      maxConcurrentCalls: 5,
      serve: {{ port: {srv.port} }},
      {responder}
      mock: {{ ringDelayMs: 300, answerDelayMs: 600, replyDelayMs: 1200,
              callerReplies: ["{CALLER_SAYS}"], callerHangupAfterReplies: 1 }},
    }}""")
    srv.env["OPENAI_API_KEY"] = "sk-browser-test"
    try:
        srv.manage("migrate", "--verbosity", "0")
        srv.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.test")
        yield from serving(srv)
    finally:
        vendors.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {_token(server)}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[Any]:
    """A Chromium tab signed in to the admin as the superuser `ops`."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 800})
            tab.set_default_timeout(WAIT_MS)
            sync_api.expect.set_options(timeout=WAIT_MS)
            tab.goto(f"{server.base}/admin/login/?next=/admin/")
            tab.fill("#id_username", "ops")
            tab.fill("#id_password", PASSWORD)
            tab.click("input[type=submit]")
            sync_api.expect(tab.locator("#user-tools")).to_contain_text("ops")
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("VOICECALL_SCREENSHOT_DIR")
    folder = (ROOT / wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _place_call(api: httpx.Client) -> str:
    response = api.post(
        "/api/calls/",
        json={"to": "+15555550123", "message": GREETING, "mode": "conversation"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["callId"])


def _ended(api: httpx.Client, call_id: str) -> bool:
    return bool(ENDED.match(api.get(f"/api/calls/{call_id}/").json()["state"]))


def test_a_finished_calls_page_reads_as_a_conversation(
    server: Server, api: httpx.Client, page: Any, screenshots: Path
) -> None:
    call_id = _place_call(api)
    _wait(lambda: _ended(api, call_id), timeout=60)

    page.goto(f"{server.base}/admin/calls/call/")
    # The list shows the id's first eight characters; the full id is the row's tooltip.
    row_link = page.locator(f'span[title="{call_id}"]')
    sync_api.expect(row_link).to_have_text(f"{call_id[:8]}…")
    row_link.click()

    bot = page.locator(".conversation li.bot .text")
    sync_api.expect(bot.first).to_have_text(GREETING)
    sync_api.expect(page.locator(".conversation li.user .text").first).to_have_text(CALLER_SAYS)
    sync_api.expect(page.locator("#call-timeline")).to_contain_text("call.answered")
    page.screenshot(path=str(screenshots / "call-page.png"), full_page=True)


def test_the_inbound_policy_and_allowlist_set_in_the_admin_screen_callers(
    server: Server, page: Any
) -> None:
    page.goto(f"{server.base}/admin/calls/inboundpolicy/add/")
    page.select_option("#id_policy", "allowlist")
    page.click("input[name=_save]")
    sync_api.expect(page.locator("#content")).to_contain_text("Effective policy: allowlist")

    page.goto(f"{server.base}/admin/calls/allowednumber/add/")
    page.fill("#id_number", "+15550007777")
    page.fill("#id_label", "Front desk")
    page.click("input[name=_save]")
    sync_api.expect(page.locator("#result_list")).to_contain_text("+15550007777")

    assert not _inbound(server, "+15550007777", "mock-browser-allowed").get("rejected")
    assert _inbound(server, "+15550008888", "mock-browser-other").get("rejected")


def _inbound(server: Server, caller: str, provider_call_id: str) -> dict[str, Any]:
    event = {
        "type": "call.initiated",
        "callId": provider_call_id,
        "direction": "inbound",
        "from": caller,
        "to": "+15550000000",
    }
    reply = httpx.post(f"{server.base}/voice/webhook", json={"event": event}, timeout=30)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_a_live_call_appears_in_the_live_view_and_changes_state_without_a_reload(
    server: Server, api: httpx.Client, page: Any, screenshots: Path
) -> None:
    page.goto(f"{server.base}/admin/calls/live/")
    sync_api.expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.evaluate("window.notReloaded = true")

    call_id = _place_call(api)

    row = page.locator(f'tr[data-call-id="{call_id}"]')
    sync_api.expect(row).to_be_visible()
    if not os.environ.get("REDIS_URL"):
        # The automatic reply's turn gives the row its latency (the screenshot shows it).
        sync_api.expect(row.locator(".latency")).to_have_text(re.compile(r"^\d+ ms$"))
    page.screenshot(path=str(screenshots / "live-view.png"))
    sync_api.expect(row.locator(".state")).to_have_text(ENDED)
    assert page.evaluate("window.notReloaded") is True

    row.locator(".state").click()
    sync_api.expect(page).to_have_url(re.compile(r"/admin/calls/call/\d+/change/$"))
    sync_api.expect(page.locator("#content")).to_contain_text(call_id)
