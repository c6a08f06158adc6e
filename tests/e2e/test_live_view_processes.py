"""The admin's live view across processes: a call placed on server B shows up on the live
view socket that server A holds, over Redis (docs/operations.md, "Live view").

Runs in .ci/run's PostgreSQL + Redis stage (tests/e2e/deployment.py); skipped on the
embedded default, whose in-process layer reaches one process only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.e2e.deployment import CALLEE, Deployment, requirements

REQUIREMENTS = requirements()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(isinstance(REQUIREMENTS, str), reason=str(REQUIREMENTS)),
]

PASSWORD = "e2e-live-password"
# Generous: the message is on its way at once; this only bounds a broken deployment.
WAIT_S = 30


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    assert not isinstance(REQUIREMENTS, str)
    database_url, redis_url = REQUIREMENTS
    deployment = Deployment(tmp_path, database_url=database_url, redis_url=redis_url)
    try:
        deployment.start(servers=("A", "B"))
        yield deployment
    finally:
        print(deployment.logs())  # shown when the test failed
        deployment.stop()


def _signed_in_cookie(base: str) -> str:
    """The admin's session cookie of the superuser `ops`, signed in through the login form."""
    with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as browser:
        login = browser.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert csrf, login.text
        browser.post(
            "/admin/login/",
            data={"csrfmiddlewaretoken": csrf.group(1), "username": "ops", "password": PASSWORD},
        )
        return f"sessionid={browser.cookies['sessionid']}"


def _live_socket(base: str, cookie: str) -> ClientConnection:
    url = base.replace("http://", "ws://") + "/admin/live/"
    return connect(url, additional_headers={"Cookie": cookie, "Origin": base})


def _next(socket: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(socket.recv(timeout=WAIT_S)))


def test_a_call_placed_on_one_server_appears_on_the_live_view_of_another(
    deployment: Deployment,
) -> None:
    deployment.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
    deployment.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "o@x.test")
    a = deployment.servers["A"].base

    with _live_socket(a, _signed_in_cookie(a)) as socket:
        assert _next(socket) == {"type": "snapshot", "calls": []}

        placed = deployment.rpc("B", "voicecall.initiate", to=CALLEE, message="Hi", mode="notify")

        update = _next(socket)
        assert update["type"] == "call"
        assert update["call"]["callId"] == placed["callId"]
        assert update["call"]["to"] == CALLEE[:5] + "•••" + CALLEE[-4:]
