"""The shared counting windows, in memory and in Redis, and the per-caller operation limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from models.user import User
from services import rate_limits
from services.errors import RateLimited
from services.rate_limits import Counters, MemoryCounters, RedisCounters
from settings import Settings
from tests.support.services import need, redis_url

REDIS_DB = 12


@pytest.fixture(params=["memory", "redis"])
async def counters(request) -> AsyncIterator[Counters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    need("redis")
    client = aioredis.Redis.from_url(redis_url(REDIS_DB))
    try:
        yield RedisCounters(client, prefix=f"test:{uuid.uuid4().hex}")
    finally:
        await client.aclose()


async def test_a_window_counts_and_closes(counters):
    first = await counters.hit("k", 0.3)
    second = await counters.hit("k", 0.3, cost=2)
    assert (first.count, second.count) == (1, 3)
    assert 0 < second.reset_after <= 0.3
    await asyncio.sleep(0.35)
    assert (await counters.hit("k", 0.3)).count == 1
    await counters.clear("k")
    assert (await counters.hit("k", 0.3)).count == 1


async def test_concurrent_hits_are_all_counted(counters):
    windows = await asyncio.gather(*[counters.hit("burst", 10) for _ in range(50)])
    assert sorted(w.count for w in windows) == list(range(1, 51))


async def test_two_processes_share_redis_windows():
    need("redis")
    prefix = f"test:{uuid.uuid4().hex}"
    a = aioredis.Redis.from_url(redis_url(REDIS_DB))
    b = aioredis.Redis.from_url(redis_url(REDIS_DB))
    try:
        await RedisCounters(a, prefix).hit("shared", 10)
        assert (await RedisCounters(b, prefix).hit("shared", 10)).count == 2
    finally:
        await a.aclose()
        await b.aclose()


async def test_spend_limits_per_user_per_priority_and_per_address():
    settings = Settings(rate_limit_per_user=2, rate_limit_per_priority_user=4, rate_limit_per_ip=1)
    counters = MemoryCounters()
    user = User(id=uuid.uuid4(), email="a@example.com", priority=False)
    quota = await rate_limits.spend(counters, user, "198.51.100.1", 1, settings)
    assert (quota.limit, quota.remaining) == (2, 1)
    await rate_limits.spend(counters, user, "198.51.100.1", 1, settings)
    with pytest.raises(RateLimited) as raised:
        await rate_limits.spend(counters, user, "198.51.100.1", 1, settings)
    assert 1 <= raised.value.retry_after <= 60

    premium = User(id=uuid.uuid4(), email="b@example.com", priority=True)
    assert (await rate_limits.spend(counters, premium, "x", 4, settings)).remaining == 0

    await rate_limits.spend(counters, None, "198.51.100.1", 1, settings)
    with pytest.raises(RateLimited):
        await rate_limits.spend(counters, None, "198.51.100.1", 1, settings)
    await rate_limits.spend(counters, None, "198.51.100.2", 1, settings)  # its own window


async def test_queries_have_windows_and_budgets_of_their_own():
    settings = Settings(
        rate_limit_per_user=1,
        query_rate_limit_per_user=3,
        query_rate_limit_per_priority_user=5,
        query_rate_limit_per_ip=2,
    )
    counters = MemoryCounters()
    user = User(id=uuid.uuid4(), email="c@example.com", priority=False)
    quota = await rate_limits.spend(counters, user, "198.51.100.3", 2, settings, reads=True)
    assert (quota.limit, quota.remaining) == (3, 1)
    await rate_limits.spend(counters, user, "198.51.100.3", 1, settings, reads=True)
    with pytest.raises(RateLimited):
        await rate_limits.spend(counters, user, "198.51.100.3", 1, settings, reads=True)
    # Changes are counted apart: reading up to the limit leaves them untouched.
    assert (await rate_limits.spend(counters, user, "198.51.100.3", 1, settings)).remaining == 0

    premium = User(id=uuid.uuid4(), email="d@example.com", priority=True)
    assert (await rate_limits.spend(counters, premium, "x", 5, settings, reads=True)).limit == 5

    await rate_limits.spend(counters, None, "198.51.100.4", 2, settings, reads=True)
    with pytest.raises(RateLimited):
        await rate_limits.spend(counters, None, "198.51.100.4", 1, settings, reads=True)
