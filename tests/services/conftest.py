"""Fixtures of the tests that take Redis away from the services (the outage tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.private_servers import PrivateRedis
from tests.support.redis_clients import RedisClients, redis_clients


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis of this test's own, which it may kill, pause and start again."""
    with PrivateRedis() as server:
        yield server


@pytest.fixture
async def worker_clients(private_redis: PrivateRedis) -> AsyncIterator[RedisClients]:
    """Clients of the private Redis, one per 'worker process', closed after the test."""
    async with redis_clients(private_redis.url()) as made:
        yield made
