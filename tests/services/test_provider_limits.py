from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from services.provider_limits import (
    Lease,
    Limiter,
    MemoryLimiter,
    ProviderLimit,
    RedisLimiter,
    Wait,
)
from tests.support.redis_clients import per_process

LIMITS = {"busy": ProviderLimit(max_concurrent=5), "metered": ProviderLimit(per_minute=3)}


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request) -> AsyncIterator:
    prefix = f"test:limit:{uuid.uuid4().hex}"
    in_memory: Limiter = MemoryLimiter(LIMITS)
    async with per_process(
        request.param,
        in_memory,
        lambda client: RedisLimiter(client, LIMITS, prefix=prefix),
    ) as make:
        yield make


async def test_never_more_than_max_concurrent_across_processes(make_limiter):
    limiters = [make_limiter() for _ in range(4)]
    results = await asyncio.gather(*[limiters[i % 4].acquire("busy") for i in range(40)])
    leases = [r for r in results if isinstance(r, Lease)]
    waits = [r for r in results if isinstance(r, Wait)]
    assert len(leases) == 5 and len(waits) == 35
    assert all(w.seconds > 0 for w in waits)
    await limiters[1].release(leases[0])
    again = await limiters[2].acquire("busy")
    assert isinstance(again, Lease)
    assert isinstance(await limiters[3].acquire("busy"), Wait)


async def test_per_minute_budget_and_unlimited_providers(make_limiter):
    limiter = make_limiter()
    results = [await limiter.acquire("metered") for _ in range(5)]
    assert [type(r) for r in results] == [Lease, Lease, Lease, Wait, Wait]
    assert all(0 < r.seconds <= 60 for r in results if isinstance(r, Wait))
    for _ in range(50):
        assert isinstance(await limiter.acquire("free"), Lease)


async def test_leases_of_dead_workers_expire(make_limiter):
    limiter = make_limiter()
    short = {"busy": ProviderLimit(max_concurrent=1, lease_seconds=0.2)}
    limiter.limits = short
    assert isinstance(await limiter.acquire("busy"), Lease)  # never released: the worker died
    assert isinstance(await limiter.acquire("busy"), Wait)
    await asyncio.sleep(0.3)
    assert isinstance(await limiter.acquire("busy"), Lease)
