"""What a new user meets under `voicecall serve` (docs/operations.md): a styled admin, API
docs that work offline, a mock inbound call that gets answered, and JSON log lines."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve import Server, _token, _wait, serving

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-operations")
    srv = Server(tmp)
    config = tmp / "operations.json5"
    config.write_text(
        f'{{ provider: "mock", inboundPolicy: "open", serve: {{ port: {srv.port} }} }}'
    )
    srv.env.update(VOICECALL_CONFIG=str(config), LOG_FORMAT="json", LOG_ACCESS="on")
    yield from serving(srv)


def _admin(server: Server) -> httpx.Client:
    """A browser signed in to the admin as a superuser."""
    server.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "o@example.com")
    admin = httpx.Client(base_url=server.base, follow_redirects=True)
    login = admin.get("/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert csrf, login.text
    admin.post(
        "/admin/login/",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": "ops", "password": "e2e-password"},
    )
    return admin


def _inbound_call(server: Server, provider_call_id: str) -> str:
    body = {
        "event": {
            "type": "call.initiated",
            "callId": provider_call_id,
            "direction": "inbound",
            "from": "+15550001111",
            "to": "+15550000000",
        }
    }
    reply = httpx.post(f"{server.base}/voice/webhook", json=body).json()
    assert reply["ok"] and not reply.get("rejected"), reply
    return str(reply["callId"])


def test_the_admins_stylesheet_is_served_as_css(served: Server) -> None:
    response = httpx.get(f"{served.base}/static/admin/css/base.css")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert b"body" in response.content


def test_a_missing_static_file_is_404(served: Server) -> None:
    assert httpx.get(f"{served.base}/static/admin/css/no-such.css").status_code == 404


def test_the_api_docs_send_a_visitor_to_sign_in_then_load_every_asset_locally(
    served: Server,
) -> None:
    anonymous = httpx.get(f"{served.base}/api/docs/")
    assert anonymous.status_code == 302
    assert anonymous.headers["location"] == "/admin/login/?next=/api/docs/"

    admin = _admin(served)
    page = admin.get("/api/docs/")
    assert page.status_code == 200
    assets = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert admin.get(asset).status_code == 200, asset


def test_an_accepted_inbound_mock_call_is_answered_and_greeted(served: Server) -> None:
    call_id = _inbound_call(served, "mock-in-greeted")
    api = httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {_token(served)}"})

    def greeted() -> list[Any]:
        lines = api.get(f"/api/calls/{call_id}/transcript/").json()["results"]
        return [line for line in lines if line["speaker"] == "bot"]

    [greeting] = _wait(greeted)
    assert greeting["text"] == "Hello! How can I help you today?"
    call = api.get(f"/api/calls/{call_id}/").json()
    assert call["answeredAt"]
    assert call["state"] != "ringing"


def _log_lines(server: Server) -> list[dict[str, Any]]:
    """Every line the server wrote, each parsed as JSON (a line that is not fails here)."""
    return [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]


def test_served_log_lines_are_json_with_numbers_masked(served: Server) -> None:
    call_id = _inbound_call(served, "mock-in-logged")
    httpx.get(f"{served.base}/healthz", params={"q": "+15550002222"})

    def logged() -> list[dict[str, Any]]:
        lines = _log_lines(served)
        return lines if any("/healthz?q=" in line["message"] for line in lines) else []

    lines = _wait(logged)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(line["logger"] == "uvicorn.error" for line in lines)
    [access] = [line for line in lines if "/healthz?q=" in line["message"]]
    assert access["logger"] == "uvicorn.access"
    assert "+1555•••2222" in access["message"]
    assert "15550002222" not in served.log.read_text()
    assert "15550001111" not in served.log.read_text()
    accepted = [line for line in lines if "inbound from" in line["message"]]
    assert (call_id, "mock") in {(line.get("callId"), line.get("provider")) for line in accepted}


def test_an_unknown_log_format_stops_serve_at_start_up(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.env["LOG_FORMAT"] = "yaml"
    result = server.manage("voicecall", "serve", check=False)

    assert result.returncode != 0
    assert "LOG_FORMAT must be 'plain' or 'json', not 'yaml'" in result.stderr
