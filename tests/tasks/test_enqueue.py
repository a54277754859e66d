"""The asyncio enqueue writes exactly what Dramatiq's RedisBroker writes, so a real worker
consumes it: compared key by key against `RedisBroker.enqueue`, then consumed by a worker."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import dramatiq
import pytest
import redis
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from tasks.enqueue import Enqueuer
from tests.support.broker import stored_messages
from tests.support.services import need, redis_url

DB = 11


@pytest.fixture
async def setup() -> Any:
    need("redis")
    namespace = f"kiln-test-enqueue-{uuid.uuid4().hex}"
    broker = RedisBroker(url=redis_url(DB), namespace=namespace)
    client = aioredis.Redis.from_url(redis_url(DB))
    sync = redis.Redis.from_url(redis_url(DB))
    try:
        yield broker, client, sync, namespace
    finally:
        for key in sync.scan_iter(f"{namespace}*"):
            sync.delete(key)
        sync.close()
        await client.aclose()
        broker.close()


@pytest.mark.parametrize("delay", [None, 60_000])
async def test_enqueued_like_the_redis_broker(setup, delay):
    broker, client, sync, namespace = setup
    actor = dramatiq.Actor(
        lambda job_id: None, broker=broker, actor_name="test.job", queue_name="jobs", priority=0,
        options={},
    )  # fmt: skip
    broker.enqueue(actor.message_with_options(args=("a",)), delay=delay)
    theirs = stored_messages(sync, namespace, "jobs.DQ" if delay else "jobs")
    for key in sync.scan_iter(f"{namespace}*"):
        sync.delete(key)

    await Enqueuer(broker, client).enqueue(actor.message_with_options(args=("a",)), delay)
    ours = stored_messages(sync, namespace, "jobs.DQ" if delay else "jobs")
    assert ours == theirs and len(ours) == 1


async def test_a_worker_runs_what_was_enqueued(setup):
    broker, client, _, _ = setup
    ran = threading.Event()
    seen: list[str] = []

    def job(value: str) -> None:
        seen.append(value)
        ran.set()

    actor = dramatiq.Actor(
        job, broker=broker, actor_name="test.run", queue_name="runs", priority=0, options={}
    )
    await Enqueuer(broker, client).enqueue(actor.message_with_options(args=("hello",)))
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert ran.wait(timeout=10)
    finally:
        worker.stop()
    assert seen == ["hello"]


async def test_other_brokers_enqueue_directly():
    broker = StubBroker()
    actor = dramatiq.Actor(
        lambda: None, broker=broker, actor_name="test.stub", queue_name="stub", priority=0,
        options={},
    )  # fmt: skip
    await Enqueuer(broker, None).enqueue(actor.message_with_options())
    assert broker.queues["stub"].qsize() == 1
