"""Static files as the ASGI app serves them (calls/serving/static_files.py); the served
process itself: tests/e2e/test_serve_operations.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from calls.serving.static_files import StaticFiles

CSS = b"body { color: black; }\n" * 20_000  # several read blocks


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"django"})


@pytest.fixture
def static(settings: Any, tmp_path: Path) -> StaticFiles:
    (tmp_path / "admin").mkdir()
    (tmp_path / "admin" / "base.css").write_bytes(CSS)
    settings.STATIC_ROOT = tmp_path
    return StaticFiles(_app)


async def _get(
    app: StaticFiles, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    await app(scope, receive, send)
    start = sent[0]
    assert all(m["type"] == "http.response.body" for m in sent[1:])
    assert not sent[-1].get("more_body")
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], head, b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_collected_file_is_sent_whole_with_its_content_type(static: StaticFiles) -> None:
    status, headers, body = await _get(static, "/static/admin/base.css")

    assert status == 200
    assert headers["content-type"].startswith("text/css")
    assert body == CSS and headers["content-length"] == str(len(CSS))


async def test_a_file_the_browser_has_is_304(static: StaticFiles) -> None:
    _, headers, _ = await _get(static, "/static/admin/base.css")

    status, _, body = await _get(static, "/static/admin/base.css", if_none_match=headers["etag"])

    assert (status, body) == (304, b"")


async def test_head_sends_no_body_and_post_is_405(static: StaticFiles) -> None:
    assert (await _get(static, "/static/admin/base.css", "HEAD"))[::2] == (200, b"")
    assert (await _get(static, "/static/admin/base.css", "POST"))[0] == 405


async def test_a_missing_file_is_404(static: StaticFiles) -> None:
    assert (await _get(static, "/static/admin/nope.css"))[::2] == (404, b"Not Found")


async def test_any_other_path_goes_to_the_app(static: StaticFiles) -> None:
    assert (await _get(static, "/admin/"))[::2] == (299, b"django")
