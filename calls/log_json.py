"""`LOG_FORMAT=json`: one JSON object per log line (python-json-logger).

docs/operations.md, "Logs". Fields: `time` (UTC, ISO 8601), `level`, `logger`, `message`,
plus `callId` and `provider` when the line names them, and any `extra=` fields. Numbers in
the message are masked by the handler's filter (calls/log_filters.py) before this runs.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Call-scoped lines say `call=<callId>` and `provider=<name>` in their text (the house
# convention, grep-able in the plain format too); the JSON line lifts them into fields. A
# webhook's access line has the callId in its URL's query string.
_CALL_ID = re.compile(r"(?:\bcall=|[?&]callId=)([^\s,;()&]+)")
_PROVIDER = re.compile(r"\bprovider=([a-z0-9_-]+)")


class JsonLogFormatter(JsonFormatter):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            # uvicorn adds an ANSI-coloured copy of some messages.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            # UTF-8 as is: a masked number stays grep-able (+1555•••0123).
            json_ensure_ascii=False,
            **kwargs,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["time"] = created.isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        message = str(log_data.get("message") or "")
        for field, pattern in (("callId", _CALL_ID), ("provider", _PROVIDER)):
            match = pattern.search(message)
            if field not in log_data and match:
                log_data[field] = match.group(1)
