"""The sweeper's re-sends of queued work, with the marks the tasks layer keeps in a real
Redis (tasks/outbox.py):
- a re-send still waiting on the queue is not repeated, however long the backlog: re-sends
  stay proportional to the work that was lost;
- queued work whose message was lost with Redis's memory (Redis restarted empty) is sent
  again at the sweeper's next run, not REQUEUE_AFTER after its last send."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

import runtime
from models.generation import Generation, GenerationStatus
from services import generations, jobs
from services.generations import FailureCode, NewGeneration, leases
from services.sweeper import sweep
from tasks import outbox
from tests.support.generations import CATALOGUE
from tests.support.services import need, redis_url

DB = 13


def runs_sent(backend, mark: int) -> list[str]:
    """The generations whose `generation.run` was sent since `backend.sent[mark]`."""
    return [args[0] for actor, args, _ in backend.sent[mark:] if actor == jobs.RUN]


@pytest.fixture
async def redis_memory(monkeypatch) -> AsyncIterator[aioredis.Redis]:
    """The sweeper's broker check on a real Redis, in a namespace of this test's own."""
    need("redis")
    client = aioredis.Redis.from_url(redis_url(DB))
    namespace = f"kiln-test-sweeper-{uuid.uuid4().hex}"
    settings = SimpleNamespace(redis_namespace=namespace)
    monkeypatch.setattr(runtime, "_current", SimpleNamespace(redis=client, settings=settings))
    monkeypatch.setattr(jobs, "_broker_check", outbox.broker_forgot)
    monkeypatch.setattr(jobs, "_resends", outbox.RedisResends())
    try:
        yield client
    finally:
        await client.delete(f"{namespace}:{outbox.MEMORY_MARK}")
        await client.aclose()


async def test_queued_work_lost_with_redis_memory_is_sent_again_at_once(
    make_user, backend, redis_memory
):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    # Queued 10 s ago and re-sent a moment ago: its next re-send is a while away...
    await Generation.filter(id=generation.id).update(
        queued_at=datetime.now(UTC) - timedelta(seconds=10),
        lease_expires_ms=leases.now_ms() + 60_000,
    )
    await sweep(CATALOGUE, requeue_after=60)  # first look at this Redis: all are sent
    mark = len(backend.sent_jobs)
    await sweep(CATALOGUE, requeue_after=60)
    assert str(generation.id) not in backend.sent_jobs[mark:]  # Redis kept its memory

    # ...when Redis restarts empty, with every queued message (this namespace's keys are
    # what the restart takes here: other tests share the server).
    namespace = runtime.current().settings.redis_namespace
    async for key in redis_memory.scan_iter(f"{namespace}:*"):
        await redis_memory.delete(key)
    await sweep(CATALOGUE, requeue_after=60)
    assert backend.sent_jobs[mark:].count(str(generation.id)) == 1
    await sweep(CATALOGUE, requeue_after=60)
    assert backend.sent_jobs[mark:].count(str(generation.id)) == 1


async def test_a_resend_waiting_on_the_queue_is_not_repeated(make_user, backend, redis_memory):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await Generation.filter(id=generation.id).update(
        queued_at=datetime.now(UTC) - timedelta(minutes=10)
    )
    mark = len(backend.sent)
    for _ in range(20):  # a long backlog: sweep after sweep, the re-send's spacing over
        await sweep(CATALOGUE, requeue_after=2)
        await Generation.filter(id=generation.id).update(lease_expires_ms=leases.now_ms() - 1)
    resent = [args for actor, args, _ in backend.sent[mark:] if args[0] == str(generation.id)]
    assert resent == [(str(generation.id), "", jobs.RESENT)]

    # A worker takes it off the queue (and, say, dies before starting it): it is lost again.
    await jobs.resend_picked_up(str(generation.id))
    await sweep(CATALOGUE, requeue_after=2)
    assert runs_sent(backend, mark).count(str(generation.id)) == 2


async def test_a_lapsed_step_is_not_sent_again_while_its_resend_waits(
    make_user, backend, redis_memory
):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    assert await generations.start(generation.id) is not None  # its worker then died
    mark = len(backend.sent)
    for _ in range(10):  # its lease (and each re-send's) lapses, sweep after sweep
        await Generation.filter(id=generation.id).update(lease_expires_ms=leases.now_ms() - 1)
        await sweep(CATALOGUE, requeue_after=2)
    resent = [args for actor, args, _ in backend.sent[mark:] if args[0] == str(generation.id)]
    assert len(resent) == 1 and resent[0][2] == jobs.RESENT

    await jobs.resend_picked_up(str(generation.id))  # taken, and that worker died too
    await Generation.filter(id=generation.id).update(lease_expires_ms=leases.now_ms() - 1)
    await sweep(CATALOGUE, requeue_after=2)
    assert runs_sent(backend, mark).count(str(generation.id)) == 2
    await generations.fail(generation.id, FailureCode.PROVIDER_TIMEOUT, "stopped by the test")


async def test_resends_still_waiting_do_not_hide_the_lapsed_steps_behind_them(
    make_user, backend, redis_memory, monkeypatch
):
    monkeypatch.setattr(leases, "BATCH", 1)  # one row read, one re-sent, at a time
    user = await make_user(credits=10)
    started = []
    for _ in range(2):
        generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
        assert await generations.start(generation.id) is not None  # its worker then died
        started.append(str(generation.id))
    mark = len(backend.sent)
    # Every lapsed step in the database gets its re-send, one a sweep, whichever comes first
    # by id: those already re-sent (still waiting) are passed over, never re-sent again.
    others = await Generation.filter(
        status=GenerationStatus.PROCESSING, lease_expires_ms__lt=leases.now_ms()
    ).count()
    for _ in range(others + 2):
        await Generation.filter(id__in=started).update(lease_expires_ms=leases.now_ms() - 1)
        await sweep(CATALOGUE, requeue_after=60)
    resent = [args[0] for _, args, _ in backend.sent[mark:]]
    assert sorted(g for g in resent if g in started) == sorted(started)
    for generation_id in started:
        await generations.fail(uuid.UUID(generation_id), FailureCode.PROVIDER_TIMEOUT, "stopped")
