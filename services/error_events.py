"""Error events: occurrences grouped by fingerprint, counted with one atomic upsert each, and
the admin's view of them (list, resolve, ignore, live stream).

`record()` is the one way to record an occurrence, from resolvers, tasks, providers and
webhooks alike. It never raises into its caller and never holds it longer than
ERROR_RECORD_WAIT_SECONDS: the write runs in its own task, on its own connection outside any
transaction of the caller (an error inside a transaction that rolls back is still recorded),
and finishes in the background when the database is slow."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from models.error_event import ErrorCategory, ErrorEvent, ErrorStatus, Severity
from observability import metrics
from realtime import channels
from realtime.hub import get_hub
from services import stats
from services.errors import BadUserInput, NotFound
from services.events import publish_after_commit
from services.pagination import Page, decode_cursor, encode_cursor
from services.sql import dialect_sql
from services.stats import TimeWindow
from services.unit_of_work import atomic
from settings import get_settings

log = logging.getLogger(__name__)

# Every recording publishes the group's new state here, for errorEventStream.
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}
MAX_NOTES = 4000

_VOLATILE = [
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
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


def stack_of(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# Writes still running after their caller stopped waiting; kept referenced until they end.
_pending: set[asyncio.Task[None]] = set()


async def record(occurrence: Occurrence) -> None:
    """Record one occurrence. Never raises: failing to record an error must not become a
    second error."""
    try:
        metrics.ERROR_OCCURRENCES.labels(occurrence.severity.value, occurrence.category.value).inc()
        task = asyncio.get_running_loop().create_task(_write_logged(occurrence))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        # Waiting keeps the usual case simple (recorded when record() returns) without letting
        # a slow database hold up a request; the task is not cancelled when the wait ends.
        await asyncio.wait({task}, timeout=get_settings().error_record_wait_seconds)
    except Exception:
        log.exception("could not record error event: %s", occurrence.message)


async def flush() -> None:
    """Wait for recordings still being written (tests, shutdown)."""
    while _pending:
        await asyncio.wait(set(_pending))


async def _write_logged(occurrence: Occurrence) -> None:
    try:
        await _write(occurrence, datetime.now(UTC))
    except Exception:
        log.exception("could not record error event: %s", occurrence.message)


_UPSERT = """
INSERT INTO error_events (fingerprint, severity, category, message, error_code, user_facing,
    user_message, status, regressed, count, version, first_seen, last_seen, last_occurrence)
VALUES (?, ?, ?, ?, ?, ?, ?, 'UNRESOLVED', FALSE, 1, 1, ?, ?, ?)
ON CONFLICT (fingerprint) DO UPDATE SET
    count = error_events.count + 1,
    version = error_events.version + 1,
    last_seen = excluded.last_seen,
    last_occurrence = excluded.last_occurrence,
    severity = excluded.severity,
    user_facing = excluded.user_facing,
    user_message = excluded.user_message,
    regressed = CASE WHEN error_events.status = 'RESOLVED' THEN TRUE
                     ELSE error_events.regressed END,
    status = CASE WHEN error_events.status = 'RESOLVED' THEN 'UNRESOLVED'
                  ELSE error_events.status END
RETURNING id
"""


def _outside_transactions() -> BaseDBAsyncClient:
    """The pooled connection beneath any transaction the calling task had open."""
    connection = connections.get("default")
    for _ in range(16):  # transactions nest a few levels at most
        if not isinstance(connection, TransactionalDBClient):
            break
        connection = connection._parent
    return connection


async def _write(occurrence: Occurrence, at: datetime) -> None:
    # This task's copy of the context only: the caller's transaction stays the caller's.
    connections.set("default", _outside_transactions())
    key = fingerprint(occurrence.category, occurrence.error_code, occurrence.message)
    context = {
        "at": at.isoformat(),
        "userId": occurrence.user_id,
        "requestId": occurrence.request_id,
        "functionName": _clip(occurrence.function_name, 200),
        "endpoint": _clip(occurrence.endpoint, 200),
        "stackTrace": _clip(occurrence.stack_trace, 32_000),
        "metadata": occurrence.metadata,
    }
    async with in_transaction():
        connection = connections.get("default")
        rows = await connection.execute_query_dict(
            dialect_sql(_UPSERT, connection),
            [
                key,
                occurrence.severity.value,
                occurrence.category.value,
                _clip(occurrence.message, 4000),
                _clip(occurrence.error_code, 64),
                occurrence.user_facing,
                _clip(occurrence.user_message, 1000),
                at,
                at,
                orjson.dumps(context, default=str).decode(),
            ],
        )
        await stats.count_error(at, key, occurrence.severity, occurrence.category)
        group = await ErrorEvent.get(id=rows[0]["id"])
    try:
        await get_hub().publish(channels.admin_errors(), message_of(group))
    except Exception:
        # No hub (a script) or pub/sub down: the group is recorded, the live view catches up.
        log.debug("could not publish error event %s", group.id, exc_info=True)


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def message_of(event: ErrorEvent) -> dict[str, Any]:
    """The group's whole visible state, as published to admins (JSON-safe)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(event.id),
        "version": event.version,
        "fingerprint": event.fingerprint,
        "severity": event.severity.value,
        "category": event.category.value,
        "message": event.message,
        "error_code": event.error_code,
        "user_facing": event.user_facing,
        "user_message": event.user_message,
        "status": event.status.value,
        "regressed": event.regressed,
        "count": event.count,
        "first_seen": iso(event.first_seen),
        "last_seen": iso(event.last_seen),
        "resolved_at": iso(event.resolved_at),
        "resolution_notes": event.resolution_notes,
        "last_occurrence": event.last_occurrence,
    }


def at_least(severity: Severity, minimum: Severity) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


async def resolve(event_id: int, notes: str | None = None) -> ErrorEvent:
    """RESOLVED with notes and time. The next occurrence reopens it as a regression."""
    if notes is not None and len(notes) > MAX_NOTES:
        raise BadUserInput(f"notes must be at most {MAX_NOTES} characters.", field="notes")
    return await _set_status(
        event_id,
        status=ErrorStatus.RESOLVED,
        resolved_at=datetime.now(UTC),
        resolution_notes=notes,
        regressed=False,
    )


async def ignore(event_id: int) -> ErrorEvent:
    """IGNORED: stays ignored whatever happens, but keeps counting."""
    return await _set_status(event_id, status=ErrorStatus.IGNORED)


async def _set_status(event_id: int, **changes: Any) -> ErrorEvent:
    async with atomic():
        updated = await ErrorEvent.filter(id=event_id).update(version=F("version") + 1, **changes)
        if not updated:
            raise NotFound("Error event not found.")
        event = await ErrorEvent.get(id=event_id)
        publish_after_commit(channels.admin_errors(), message_of(event))
        return event


async def list_events(
    *,
    first: int,
    after: str | None = None,
    severities: list[Severity] | None = None,
    categories: list[ErrorCategory] | None = None,
    statuses: list[ErrorStatus] | None = None,
    window: TimeWindow | None = None,
) -> Page[ErrorEvent]:
    """Groups by last seen, newest first; the window filters by last seen too."""
    query = ErrorEvent.all()
    if severities:
        query = query.filter(severity__in=severities)
    if categories:
        query = query.filter(category__in=categories)
    if statuses:
        query = query.filter(status__in=statuses)
    if window is not None:
        query = query.filter(last_seen__gte=datetime.now(UTC) - window.duration)
    if after:
        last_seen, last_id = decode_cursor(after)
        if not last_id.isdigit():
            raise BadUserInput("Invalid cursor.", field="after")
        query = query.filter(
            Q(last_seen__lt=last_seen) | Q(last_seen=last_seen, id__lt=int(last_id))
        )
    rows = await query.order_by("-last_seen", "-id").limit(first + 1)
    return Page(
        items=rows[:first],
        has_next=len(rows) > first,
        cursor_of=lambda e: encode_cursor(e.last_seen, str(e.id)),
    )
