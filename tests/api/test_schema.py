"""The OpenAPI document and its browsable page (docs/design.md, "6. HTTP and websocket surface")."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def schema(api: APIClient) -> dict[str, Any]:
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_is_an_openapi_3_document_with_the_api_paths(api: APIClient) -> None:
    document = schema(api)

    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "voicecall API"
    paths = document["paths"]
    for path in (
        "/api/rpc",
        "/api/calls/",
        "/api/calls/{call_id}/",
        "/api/calls/{call_id}/continue/",
        "/api/calls/{call_id}/speak/",
        "/api/calls/{call_id}/dtmf/",
        "/api/calls/{call_id}/end/",
        "/api/calls/{call_id}/transcript/",
        "/api/calls/{call_id}/events/",
        "/api/tools/voice_call",
    ):
        assert path in paths, path
    assert set(paths["/api/calls/"]) >= {"get", "post"}
    assert "post" in paths["/api/rpc"]


def test_the_schema_is_served_as_yaml_by_default(api: APIClient) -> None:
    response = api.get("/api/schema/")

    assert response.status_code == 200
    assert "openapi" in response["Content-Type"]
    document = yaml.safe_load(response.content)
    assert "/api/rpc" in document["paths"]


def test_the_list_documents_its_filters_and_pagination(api: APIClient) -> None:
    get = schema(api)["paths"]["/api/calls/"]["get"]

    names = {p["name"] for p in get["parameters"]}
    assert {"state", "direction", "provider", "limit", "offset"} <= names


def _component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _request_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return _component(document, body["schema"]["$ref"])


def test_each_request_body_documents_its_own_fields(api: APIClient) -> None:
    document = schema(api)

    create = _request_schema(document, "/api/calls/")
    dtmf = _request_schema(document, "/api/calls/{call_id}/dtmf/")

    assert "to" in create["properties"]
    assert "digits" in dtmf["properties"]
    assert dtmf["required"] == ["digits"]


def test_the_schema_declares_bearer_authentication(api: APIClient) -> None:
    document = schema(api)

    schemes = document.get("components", {}).get("securitySchemes", {})
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    assert document["paths"]["/api/rpc"]["post"].get("security")


def test_the_docs_page_is_html_pointing_at_the_schema(api: APIClient) -> None:
    response = api.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"/api/schema/" in response.content
    assert b"voicecall API" in response.content


def test_a_signed_in_admin_can_read_the_docs_page_in_a_browser(admin_client: Any) -> None:
    assert admin_client.get("/api/docs/").status_code == 200
    assert admin_client.get("/api/schema/").status_code == 200


def test_a_visitor_not_signed_in_is_sent_to_the_admin_login(client: Any) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(admin_client: Any) -> None:
    html = admin_client.get("/api/docs/").content.decode()

    assets = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in a for a in assets)
    assert all(a.startswith("/static/") for a in assets), assets
    assert "https://" not in html
