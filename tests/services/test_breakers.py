from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.breakers import BreakerPolicy, Breakers, CircuitState, MemoryBreakers, RedisBreakers
from tests.support.redis_clients import per_process
from tests.support.services import need, redis_url

POLICY = BreakerPolicy(failure_threshold=3, min_calls=4, window=30, cooldown=0.3, probe_timeout=5)


@pytest.fixture(params=["memory", "redis"])
async def make_breakers(request) -> AsyncIterator:
    """Factory: breakers that share state like two worker processes would."""
    prefix = f"test:breaker:{uuid.uuid4().hex}"
    in_memory: Breakers = MemoryBreakers(POLICY)
    async with per_process(
        request.param,
        in_memory,
        lambda client: RedisBreakers(client, POLICY, prefix=prefix),
    ) as make:
        yield make


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


async def test_failures_that_left_the_window_do_not_count(make_breakers):
    breakers = make_breakers()
    short = BreakerPolicy(failure_threshold=3, min_calls=3, window=0.3, cooldown=5)
    breakers.policy = short
    for _ in range(2):
        await breakers.record("slow", False)
    await asyncio.sleep(0.4)
    await breakers.record("slow", False)  # the first two are out of the window
    assert await breakers.state("slow") is CircuitState.CLOSED
    await breakers.record("slow", False)
    await breakers.record("slow", False)
    assert await breakers.state("slow") is CircuitState.OPEN


async def test_a_probe_that_fails_before_the_window_fills_still_reopens(make_breakers):
    """Half-open, one failure is enough (the window was cleared when it tripped)."""
    breakers = make_breakers()
    for _ in range(4):
        await breakers.record("p", False)
    await asyncio.sleep(0.35)
    assert await breakers.state("p") is CircuitState.HALF_OPEN
    await breakers.record("p", False)
    assert await breakers.state("p") is CircuitState.OPEN
    await asyncio.sleep(0.35)
    assert await breakers.allow("p")
    await breakers.record("p", True)
    assert await breakers.state("p") is CircuitState.CLOSED
    for _ in range(2):  # a fresh window: two failures do not trip it
        await breakers.record("p", False)
    assert await breakers.state("p") is CircuitState.CLOSED


async def test_allow_and_record_are_one_round_trip_each():
    """They surround every provider call: one script each, whatever the state."""
    need("redis")
    client = aioredis.Redis.from_url(redis_url(12))
    breakers = RedisBreakers(client, POLICY, prefix=f"test:breaker:{uuid.uuid4().hex}")
    sent: list[str] = []
    execute = client.execute_command

    async def counted(*args, **options):
        sent.append(str(args[0]))
        return await execute(*args, **options)

    client.execute_command = counted  # type: ignore[method-assign]
    try:
        for ok in (True, False, False, False):  # closed ... tripped on the last
            sent.clear()
            assert await breakers.allow("acme")
            await breakers.record("acme", ok)
            assert len([c for c in sent if c.upper() != "SCRIPT LOAD"]) == 2, sent
        assert await breakers.state("acme") is CircuitState.OPEN
        sent.clear()
        assert not await breakers.allow("acme")
        assert len([c for c in sent if c.upper() != "SCRIPT LOAD"]) == 1, sent
    finally:
        await client.aclose()
