"""LOG_FORMAT=json: one JSON object per line, numbers masked (docs/operations.md, "Logs")."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from calls.log_filters import RedactPhoneNumbers
from calls.log_json import JsonLogFormatter

ROOT = Path(__file__).resolve().parents[2]


def _log(msg: str, *args: object, **extra: Any) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    handler.addFilter(RedactPhoneNumbers())
    logger = logging.getLogger("calls.test_log_json")
    logger.addHandler(handler)
    try:
        logger.warning(msg, *args, extra=extra or None)
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    return dict(json.loads(line))


def test_a_line_carries_time_level_logger_and_message() -> None:
    line = _log("sweep took %d ms", 12)

    assert line["level"] == "WARNING"
    assert line["logger"] == "calls.test_log_json"
    assert line["message"] == "sweep took 12 ms"
    assert line["time"].endswith("+00:00")
    assert "callId" not in line and "provider" not in line


def test_the_call_and_provider_a_line_names_become_fields() -> None:
    line = _log("call=%s provider=%s stream start failed", "3f2b-9c", "telnyx")

    assert (line["callId"], line["provider"]) == ("3f2b-9c", "telnyx")


def test_a_provider_call_id_is_not_taken_for_the_call() -> None:
    line = _log("provider_call_id=%s ended", "CA123")

    assert "callId" not in line and "provider" not in line


def test_fields_passed_as_extra_are_kept() -> None:
    line = _log("answered", callId="c-1", provider="mock")

    assert (line["callId"], line["provider"]) == ("c-1", "mock")


def test_a_number_in_the_message_is_masked() -> None:
    line = _log("carrier said: %s", "The 'To' number +15555550123 is not valid")

    assert "+1555•••0123" in line["message"]
    assert "15555550123" not in json.dumps(line)


def test_a_webhook_access_line_names_the_call_of_its_url() -> None:
    line = _log('%s - "POST /voice/webhook?callId=%s&type=status HTTP/1.1" 200', "ip", "c-9")

    assert line["callId"] == "c-9"


def test_a_celery_worker_logs_in_the_configured_format() -> None:
    # app.log.setup is what a starting worker runs; left to itself it installs Celery's
    # own format on the root logger.
    script = """if True:
        import django, logging
        django.setup()
        from voicecall_project.celery import app
        app.log.setup(loglevel="INFO")
        logging.getLogger("celery.worker").warning("call=%s for %s", "c-7", "+15555550123")
    """
    env = {**os.environ, "LOG_FORMAT": "json", "VOICECALL_DOTENV": "off"}
    env["DJANGO_SETTINGS_MODULE"] = "voicecall_project.settings"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    [line] = [json.loads(text) for text in (result.stdout + result.stderr).splitlines()]
    assert (line["logger"], line["callId"]) == ("celery.worker", "c-7")
    assert "+1555•••0123" in line["message"]
