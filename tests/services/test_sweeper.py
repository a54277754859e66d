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
