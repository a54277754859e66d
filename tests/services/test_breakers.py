from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.breakers import BreakerPolicy, CircuitState, MemoryBreakers, RedisBreakers
from tests.support.services import need, redis_url

POLICY = BreakerPolicy(failure_threshold=3, min_calls=4, window=30, cooldown=0.3, probe_timeout=5)


@pytest.fixture(params=["memory", "redis"])
async def make_breakers(request) -> AsyncIterator:
    """Factory: breakers that share state like two worker processes would."""
    if request.param == "memory":
        shared = MemoryBreakers(POLICY)
        yield lambda: shared
        return
    need("redis")
    clients: list[aioredis.Redis] = []
    prefix = f"test:breaker:{uuid.uuid4().hex}"

    def make() -> RedisBreakers:
        client = aioredis.Redis.from_url(redis_url(12))
        clients.append(client)
        return RedisBreakers(client, POLICY, prefix=prefix)

    yield make
    for client in clients:
        await client.aclose()


async def test_a_failing_provider_opens_for_every_process_then_recovers(make_breakers):
    worker_a, worker_b = make_breakers(), make_breakers()
    for ok in (True, False, False):
        await worker_a.record("acme", ok)
    assert await worker_b.state("acme") is CircuitState.CLOSED  # 3 calls < min_calls
    await worker_b.record("acme", False)
    assert await worker_a.state("acme") is CircuitState.OPEN
    assert not await worker_a.allow("acme") and not await worker_b.allow("acme")
    assert await worker_a.allow("other")  # breakers are per provider

    await asyncio.sleep(0.35)
    assert await worker_b.state("acme") is CircuitState.HALF_OPEN
    assert await worker_a.allow("acme")  # the one probe
    assert not await worker_b.allow("acme")  # nobody else while it runs
    await worker_a.record("acme", True)
    assert await worker_b.state("acme") is CircuitState.CLOSED
    assert await worker_b.allow("acme")


async def test_a_failed_probe_opens_the_breaker_again(make_breakers):
    breakers = make_breakers()
    for _ in range(4):
        await breakers.record("flaky", False)
    await asyncio.sleep(0.35)
    assert await breakers.allow("flaky")
    await breakers.record("flaky", False)
    assert await breakers.state("flaky") is CircuitState.OPEN
    assert not await breakers.allow("flaky")


async def test_occasional_failures_among_successes_keep_it_closed(make_breakers):
    breakers = make_breakers()
    for ok in (False, True, True, False, True, True, True, True):
        await breakers.record("steady", ok)
    assert await breakers.state("steady") is CircuitState.CLOSED
    assert await breakers.allow("steady")
