"""`responder` in the config: its defaults, a typed read, and the start-up refusals.

docs/plugin-behaviour.md, "The gateway's agent as responder".
"""

from __future__ import annotations

from typing import Any

import pytest

from calls.config import PLUGIN_PATH, ConfigError, ResponderConfig, parse_config

URL = "https://agent.example/voice/reply"


def test_the_responder_is_off_by_default() -> None:
    assert parse_config({}, {}).responder == ResponderConfig(url=None, secret=None, timeout_ms=5000)


def test_a_responder_block_reads_typed() -> None:
    cfg = parse_config({"responder": {"url": URL, "secret": "s3cret", "timeoutMs": 1500}}, {})
    assert cfg.responder == ResponderConfig(url=URL, secret="s3cret", timeout_ms=1500)


@pytest.mark.parametrize("url", ["ftp://agent.example/reply", "agent.example/reply", "", 5])
def test_a_url_that_is_not_http_stops_startup(url: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"responder": {"url": url, "secret": "s3cret"}}, {})
    assert f"{PLUGIN_PATH}.responder.url must be an http(s) URL" in info.value.errors


@pytest.mark.parametrize("secret", [None, ""])
def test_a_url_without_a_secret_stops_startup(secret: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"responder": {"url": URL, "secret": secret}}, {})
    assert info.value.errors == [
        f"{PLUGIN_PATH}.responder.secret is required when responder.url is set"
    ]


@pytest.mark.parametrize("timeout_ms", [99, 60001, "5000", 1.5])
def test_a_timeout_out_of_bounds_stops_startup(timeout_ms: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"responder": {"url": URL, "secret": "s", "timeoutMs": timeout_ms}}, {})
    assert info.value.errors == [
        f"{PLUGIN_PATH}.responder.timeoutMs must be an integer between 100 and 60000"
    ]


def test_an_unknown_responder_key_stops_startup() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"responder": {"url": URL, "secret": "s", "model": "gpt"}}, {})
    assert info.value.errors == [f"{PLUGIN_PATH}.responder.model is not a recognized key"]
