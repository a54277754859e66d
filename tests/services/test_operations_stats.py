"""errorStats from the hourly counters, and queueStats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.error_event import ErrorCategory, ErrorEvent, ErrorHourlyCount, Severity
from models.generation import Generation, GenerationStatus
from models.stats import GenerationHourlyCount
from services import error_events, generations, stats
from services.catalogue import load_catalogue
from services.error_events import Occurrence, record
from services.generations import NewGeneration, StoredOutput
from services.generations.failures import FailureCode
from services.stats import TimeWindow, hour_of, window_start
from tests.support.stats import clear_counters


def test_windows_start_on_the_hour():
    now = datetime(2026, 3, 10, 14, 25, 7, tzinfo=UTC)
    assert window_start(TimeWindow.LAST_HOUR, now) == datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert window_start(TimeWindow.LAST_24_HOURS, now) == datetime(2026, 3, 9, 14, tzinfo=UTC)
    assert window_start(TimeWindow.LAST_7_DAYS, now) == datetime(2026, 3, 3, 14, tzinfo=UTC)
    assert window_start(TimeWindow.LAST_30_DAYS, now) == datetime(2026, 2, 8, 14, tzinfo=UTC)


async def test_error_stats_count_a_known_set_of_occurrences(backend, make_user):
    await clear_counters()
    known = [
        (Severity.CRITICAL, ErrorCategory.DATABASE, "Pool exhausted", 3),
        (Severity.ERROR, ErrorCategory.GENERATION, "Provider said 500", 4),
        (Severity.ERROR, ErrorCategory.PAYMENT, "Card declined", 2),
        (Severity.WARNING, ErrorCategory.WEBHOOK, "Bad signature", 5),
    ]
    for severity, category, message, times in known:
        for _ in range(times):
            await record(Occurrence(severity, category, message, error_code="K"))
    # Resolved groups are not unresolved; an old hour lies outside short windows.
    declined = await ErrorEvent.get(message="Card declined")
    await error_events.resolve(declined.id)
    old_hour = hour_of(datetime.now(UTC) - timedelta(days=3))
    await ErrorHourlyCount.create(
        hour=old_hour,
        fingerprint="old",
        severity=Severity.CRITICAL,
        category=ErrorCategory.SYSTEM,
        count=100,
    )

    # Generations: two completed and one failed in this hour, one cancelled (not a failure).
    user = await make_user(credits=10)
    catalogue = load_catalogue()
    made = [
        await generations.create_generation(user, NewGeneration(prompt=f"p{i}"), catalogue)
        for i in range(4)
    ]
    for generation in made[:3]:
        await generations.start(generation.id)
    for generation in made[:2]:
        output = StoredOutput(0, f"{user.id}/{generation.id}/0.png", "image/png", 1)
        await generations.complete(generation.id, [output], "local")
    await generations.fail(made[2].id, FailureCode.PROVIDER_ERROR)
    await generations.cancel(user, made[3].id)

    day = await stats.error_stats(TimeWindow.LAST_24_HOURS)
    # The known ones, and the failed generation's own error event (fail records it).
    assert day.occurrences == 15
    assert day.critical == 3
    assert day.unresolved_groups == 4
    assert day.by_severity == [
        (Severity.CRITICAL, 3),
        (Severity.ERROR, 7),
        (Severity.WARNING, 5),
        (Severity.INFO, 0),
    ]
    by_category = dict(day.by_category)
    assert by_category[ErrorCategory.WEBHOOK] == 5
    assert by_category[ErrorCategory.GENERATION] == 5
    assert by_category[ErrorCategory.SYSTEM] == 0
    # biggest first, ties by name
    assert day.by_category[:2] == [(ErrorCategory.GENERATION, 5), (ErrorCategory.WEBHOOK, 5)]
    assert len(day.by_category) == len(ErrorCategory)
    assert abs(day.generation_failure_rate - 1 / 3) < 1e-9

    week = await stats.error_stats(TimeWindow.LAST_7_DAYS)
    assert (week.occurrences, week.critical) == (115, 103)

    row = await GenerationHourlyCount.get(model=made[0].model)
    assert (row.completed, row.failed, row.canceled) == (2, 1, 1)


async def test_failure_rate_is_zero_without_finished_generations(backend):
    await clear_counters()
    assert (await stats.error_stats(TimeWindow.LAST_HOUR)).generation_failure_rate == 0.0


async def test_a_repeated_fail_is_counted_once(backend, make_user):
    await clear_counters()
    user = await make_user()
    generation = await generations.create_generation(
        user, NewGeneration(prompt="x"), load_catalogue()
    )
    await generations.start(generation.id)
    await generations.fail(generation.id, FailureCode.PROVIDER_ERROR)
    # A second fail finds no live row: nothing changes, nothing is counted twice.
    assert await generations.fail(generation.id, FailureCode.PROVIDER_ERROR) is None
    row = await GenerationHourlyCount.get(model=generation.model)
    assert (row.completed, row.failed) == (0, 1)


async def test_queue_stats(backend, make_user):
    before = await stats.queue_stats()
    user = await make_user(credits=10)
    catalogue = load_catalogue()
    first = await generations.create_generation(user, NewGeneration(prompt="a"), catalogue)
    second = await generations.create_generation(user, NewGeneration(prompt="b"), catalogue)
    await Generation.filter(id=first.id).update(queued_at=datetime.now(UTC) - timedelta(days=400))
    await generations.start(second.id)
    after = await stats.queue_stats()
    assert after.queued == before.queued + 1
    assert after.processing == before.processing + 1
    assert after.awaiting_approval == before.awaiting_approval
    assert after.oldest_queued_seconds is not None
    assert after.oldest_queued_seconds >= 400 * 86400
    # Leave nothing running for the tests that follow.
    await generations.cancel(user, first.id)
    await generations.cancel(user, second.id)
    assert (await Generation.get(id=first.id)).status is GenerationStatus.CANCELED
