from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.generation import Generation, GenerationStatus
from services import credits, generations
from services.generations import NewGeneration
from services.sweeper import sweep
from tests.support.generations import CATALOGUE
from tests.support.ledger import assert_ledger_matches


async def test_stale_queued_generations_are_enqueued_again_once(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await Generation.filter(id=generation.id).update(
        queued_at=datetime.now(UTC) - timedelta(minutes=5)
    )
    before = len(backend.sent_jobs)
    first = await sweep(CATALOGUE, requeue_after=60)
    await sweep(CATALOGUE, requeue_after=60)
    # Other tests' rows may come of age between the two sweeps: only this one is counted.
    assert first["requeued"] >= 1
    assert backend.sent_jobs[before:].count(str(generation.id)) == 1


async def test_generations_stuck_processing_are_failed_and_refunded(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await generations.start(generation.id)
    limit = CATALOGUE.time_limit(generation.model)
    await Generation.filter(id=generation.id).update(
        started_at=datetime.now(UTC) - timedelta(seconds=limit + 5)
    )
    result = await sweep(CATALOGUE, requeue_after=60)
    assert result["timed_out"] >= 1
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "PROVIDER_TIMEOUT")
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_young_work_is_left_alone(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await generations.start(generation.id)
    await sweep(CATALOGUE, requeue_after=60)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.PROCESSING


async def test_a_requeue_keeps_the_time_the_user_has_been_waiting(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    queued_at = datetime.now(UTC) - timedelta(minutes=5)
    await Generation.filter(id=generation.id).update(queued_at=queued_at)
    mark = len(backend.sent_jobs)
    await sweep(CATALOGUE, requeue_after=60)
    assert backend.sent_jobs[mark:].count(str(generation.id)) == 1
    assert (await Generation.get(id=generation.id)).queued_at == queued_at


async def test_requeues_of_a_backlog_stay_proportional_to_the_lost_work(make_user, backend):
    """A generation stuck behind a 100 s backlog, swept every second with a short
    REQUEUE_AFTER: each re-send waits at least as long as the generation had waited, so it
    is re-sent a handful of times, not once per REQUEUE_AFTER (50 times here)."""
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    mark = len(backend.sent_jobs)
    for _ in range(100):
        # A second of the backlog passes (every time the row holds moves a second back).
        row = await Generation.get(id=generation.id)
        await Generation.filter(id=generation.id).update(
            queued_at=row.queued_at - timedelta(seconds=1),
            lease_expires_ms=row.lease_expires_ms and row.lease_expires_ms - 1000,
        )
        await sweep(CATALOGUE, requeue_after=2)
    resent = backend.sent_jobs[mark:].count(str(generation.id))
    assert 1 <= resent <= 7  # at 2, 4, 8, 16, 32 and 64 s of waiting
