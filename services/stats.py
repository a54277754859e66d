"""Hourly counters and the numbers an admin on call reads.

Occurrences and finished generations are counted per hour with one atomic upsert each, in the
transaction of the change they count. Stats over a window then sum a few rows per hour instead
of scanning millions of occurrences or generations. A window is measured in whole hours: it
starts at the beginning of the hour it reaches back into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tortoise import connections
from tortoise.functions import Count, Sum

from models.error_event import ErrorCategory, ErrorEvent, ErrorHourlyCount, ErrorStatus, Severity
from models.generation import Generation, GenerationStatus
from models.stats import GenerationHourlyCount
from observability import logs, metrics
from services.sql import dialect_sql
from services.unit_of_work import after_commit


class TimeWindow(StrEnum):
    LAST_HOUR = "LAST_HOUR"
    LAST_24_HOURS = "LAST_24_HOURS"
    LAST_7_DAYS = "LAST_7_DAYS"
    LAST_30_DAYS = "LAST_30_DAYS"

    @property
    def duration(self) -> timedelta:
        return _DURATIONS[self]


_DURATIONS = {
    TimeWindow.LAST_HOUR: timedelta(hours=1),
    TimeWindow.LAST_24_HOURS: timedelta(hours=24),
    TimeWindow.LAST_7_DAYS: timedelta(days=7),
    TimeWindow.LAST_30_DAYS: timedelta(days=30),
}
SEVERITY_ORDER = (Severity.CRITICAL, Severity.ERROR, Severity.WARNING, Severity.INFO)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def window_start(window: TimeWindow, now: datetime | None = None) -> datetime:
    return hour_of((now or datetime.now(UTC)) - window.duration)


_COUNT_ERROR = """
INSERT INTO error_hourly_counts (hour, fingerprint, severity, category, count)
VALUES (?, ?, ?, ?, 1)
ON CONFLICT (hour, fingerprint, severity) DO UPDATE SET
    count = error_hourly_counts.count + 1
"""


async def count_error(
    at: datetime, fingerprint: str, severity: Severity, category: ErrorCategory
) -> None:
    """One more occurrence in `at`'s hour (run it in the recording's transaction)."""
    connection = connections.get("default")
    await connection.execute_query(
        dialect_sql(_COUNT_ERROR, connection),
        [hour_of(at), fingerprint, severity.value, category.value],
    )


def count_generations_sql(rows: str) -> str:
    """The hourly counters' upsert of `rows`: a VALUES list or a SELECT of (hour, model,
    completed, failed, canceled), as the steps and the one-statement completion write it."""
    return f"""
INSERT INTO generation_hourly_counts (hour, model, completed, failed, canceled)
{rows}
ON CONFLICT (hour, model) DO UPDATE SET
    completed = generation_hourly_counts.completed + excluded.completed,
    failed = generation_hourly_counts.failed + excluded.failed,
    canceled = generation_hourly_counts.canceled + excluded.canceled
"""


_COUNT_GENERATION = count_generations_sql("VALUES (?, ?, ?, ?, ?)")


async def count_finished_generation(generation: Generation) -> None:
    """Counts a generation that just reached a final state (in the transition's transaction,
    so a rolled-back transition is not counted)."""
    status = generation.status
    if not status.is_final:
        return
    connection = connections.get("default")
    await connection.execute_query(
        dialect_sql(_COUNT_GENERATION, connection),
        [
            hour_of(generation.completed_at or datetime.now(UTC)),
            generation.model,
            int(status is GenerationStatus.COMPLETED),
            int(status is GenerationStatus.FAILED),
            int(status is GenerationStatus.CANCELED),
        ],
    )


async def observe_transition(generation: Generation) -> None:
    """Called by the generation lifecycle after each status change, inside its transaction:
    counts finished generations per hour and, once committed, moves the process metrics."""
    await count_finished_generation(generation)
    observe_after_commit(generation)


def observe_after_commit(generation: Generation) -> None:
    """The process metrics of a status change, moved once it commits (for a change whose
    statement also counted it: `observe_transition` without the counting)."""
    logs.bind(generation_id=generation.id)
    status, model = generation.status, generation.model
    duration = None
    if status.is_final and generation.started_at and generation.completed_at:
        duration = (generation.completed_at - generation.started_at).total_seconds()

    async def observe() -> None:
        metrics.GENERATION_TRANSITIONS.labels(status.value).inc()
        if duration is not None:
            metrics.GENERATION_DURATION.labels(model, status.value).observe(max(duration, 0.0))

    after_commit(observe)


@dataclass(frozen=True)
class ErrorStats:
    window: TimeWindow
    occurrences: int
    critical: int
    unresolved_groups: int
    by_severity: list[tuple[Severity, int]]
    by_category: list[tuple[ErrorCategory, int]]
    # failed / (completed + failed); cancellations are the user's choice, not failures.
    generation_failure_rate: float


async def error_stats(window: TimeWindow, now: datetime | None = None) -> ErrorStats:
    since = window_start(window, now)
    buckets = ErrorHourlyCount.filter(hour__gte=since)
    severity_rows = (
        await buckets.annotate(total=Sum("count")).group_by("severity").values("severity", "total")
    )
    category_rows = (
        await ErrorHourlyCount.filter(hour__gte=since)
        .annotate(total=Sum("count"))
        .group_by("category")
        .values("category", "total")
    )
    by_severity = {Severity(r["severity"]): int(r["total"] or 0) for r in severity_rows}
    by_category = {ErrorCategory(r["category"]): int(r["total"] or 0) for r in category_rows}
    unresolved = await ErrorEvent.filter(
        status=ErrorStatus.UNRESOLVED, last_seen__gte=since
    ).count()
    generation_rows = (
        await GenerationHourlyCount.filter(hour__gte=since)
        .annotate(completed_sum=Sum("completed"), failed_sum=Sum("failed"))
        .values("completed_sum", "failed_sum")
    )
    completed = sum(int(r["completed_sum"] or 0) for r in generation_rows)
    failed = sum(int(r["failed_sum"] or 0) for r in generation_rows)
    return ErrorStats(
        window=window,
        occurrences=sum(by_severity.values()),
        critical=by_severity.get(Severity.CRITICAL, 0),
        unresolved_groups=unresolved,
        by_severity=[(s, by_severity.get(s, 0)) for s in SEVERITY_ORDER],
        by_category=sorted(
            ((c, by_category.get(c, 0)) for c in ErrorCategory),
            key=lambda pair: (-pair[1], pair[0].value),
        ),
        generation_failure_rate=failed / (completed + failed) if completed + failed else 0.0,
    )


@dataclass(frozen=True)
class QueueStats:
    queued: int
    processing: int
    awaiting_approval: int
    oldest_queued_seconds: float | None


async def queue_stats(now: datetime | None = None) -> QueueStats:
    waiting = (
        GenerationStatus.QUEUED,
        GenerationStatus.PROCESSING,
        GenerationStatus.AWAITING_APPROVAL,
    )
    rows = (
        await Generation.filter(status__in=list(waiting))
        .annotate(total=Count("id"))
        .group_by("status")
        .values("status", "total")
    )
    counts = {GenerationStatus(r["status"]): int(r["total"]) for r in rows}
    oldest = (
        await Generation.filter(status=GenerationStatus.QUEUED)
        .order_by("queued_at")
        .first()
        .values_list("queued_at", flat=True)
    )
    age = None
    if isinstance(oldest, datetime):
        age = max(((now or datetime.now(UTC)) - oldest).total_seconds(), 0.0)
    return QueueStats(
        queued=counts.get(GenerationStatus.QUEUED, 0),
        processing=counts.get(GenerationStatus.PROCESSING, 0),
        awaiting_approval=counts.get(GenerationStatus.AWAITING_APPROVAL, 0),
        oldest_queued_seconds=age,
    )
