"""Queued work whose message was lost with Redis's memory (Redis restarted empty) is sent
again at the sweeper's next run, not REQUEUE_AFTER after its last send: the broker check of
the tasks layer (tasks/outbox.py) asks the real Redis whether it kept its memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis

import runtime
from models.generation import Generation
from services import generations, jobs, leases
from services.generations import NewGeneration
from services.sweeper import sweep
from tasks import outbox
from tests.support.generations import CATALOGUE
from tests.support.services import need, redis_url

DB = 13


@pytest.fixture
async def redis_memory(monkeypatch) -> AsyncIterator[aioredis.Redis]:
    """The sweeper's broker check on a real Redis, in a namespace of this test's own."""
    need("redis")
    client = aioredis.Redis.from_url(redis_url(DB))
    namespace = f"kiln-test-sweeper-{uuid.uuid4().hex}"
    settings = SimpleNamespace(redis_namespace=namespace)
    monkeypatch.setattr(runtime, "_current", SimpleNamespace(redis=client, settings=settings))
    monkeypatch.setattr(jobs, "_broker_check", outbox.broker_forgot)
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
