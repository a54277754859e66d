"""Recording errors: occurrences grouped by fingerprint with one atomic upsert each."""

from __future__ import annotations

import hashlib
import logging
import re
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from tortoise import connections

from models.error_event import ErrorCategory, Severity

log = logging.getLogger(__name__)

_VOLATILE = [
    (re.compile(r"https?://\S+"), "<url>"),
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<uuid>",
    ),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]


@dataclass
class Occurrence:
    severity: Severity
    category: ErrorCategory
    message: str
    error_code: str | None = None
    user_facing: bool = False
    user_message: str | None = None
    user_id: str | None = None
    request_id: str | None = None
    function_name: str | None = None
    endpoint: str | None = None
    stack_trace: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def normalise(message: str) -> str:
    for pattern, replacement in _VOLATILE:
        message = pattern.sub(replacement, message)
    return message


def fingerprint(category: ErrorCategory, error_code: str | None, message: str) -> str:
    material = f"{category.value}\x00{error_code or ''}\x00{normalise(message)}"
    return hashlib.sha256(material.encode()).hexdigest()


_UPSERT = """
INSERT INTO error_events (fingerprint, severity, category, message, error_code, user_facing,
    user_message, status, regressed, count, first_seen, last_seen, last_occurrence)
VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, 'UNRESOLVED', {false}, 1, {p}, {p}, {p})
ON CONFLICT (fingerprint) DO UPDATE SET
    count = error_events.count + 1,
    last_seen = excluded.last_seen,
    last_occurrence = excluded.last_occurrence,
    severity = excluded.severity,
    regressed = CASE WHEN error_events.status = 'RESOLVED' THEN {true}
                     ELSE error_events.regressed END,
    status = CASE WHEN error_events.status = 'RESOLVED' THEN 'UNRESOLVED'
                  ELSE error_events.status END
"""


async def record(occurrence: Occurrence) -> None:
    """Never raises: failing to record an error must not become a second error."""
    try:
        await _record(occurrence)
    except Exception:
        log.exception("could not record error event: %s", occurrence.message)


async def _record(occurrence: Occurrence) -> None:
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    placeholders = iter(range(1, 20))
    sql = _UPSERT.format_map(
        _Placeholders(lambda: f"${next(placeholders)}" if postgres else "?", postgres)
    )
    now = datetime.now(UTC)
    context = {
        "at": now.isoformat(),
        "userId": occurrence.user_id,
        "requestId": occurrence.request_id,
        "functionName": occurrence.function_name,
        "endpoint": occurrence.endpoint,
        "stackTrace": occurrence.stack_trace,
        "metadata": occurrence.metadata,
    }
    values = [
        fingerprint(occurrence.category, occurrence.error_code, occurrence.message),
        occurrence.severity.value,
        occurrence.category.value,
        occurrence.message,
        occurrence.error_code,
        occurrence.user_facing,
        occurrence.user_message,
        now if postgres else now.isoformat(),
        now if postgres else now.isoformat(),
        orjson.dumps(context).decode(),
    ]
    await connection.execute_query(sql, values)


class _Placeholders(dict[str, str]):
    def __init__(self, next_placeholder: Any, postgres: bool) -> None:
        super().__init__(true="TRUE" if postgres else "1", false="FALSE" if postgres else "0")
        self._next = next_placeholder

    def __missing__(self, key: str) -> str:
        if key == "p":
            return str(self._next())
        raise KeyError(key)


def stack_of(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))
