"""Fixtures of the services tests: a private Redis to take away (the outage tests) and a
fake Replicate whose jobs run until cancelled (the runner's cancel and throttling tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.fakes import served
from tests.support.fakes.replicate import FakeReplicate
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


@pytest.fixture(scope="module")
def replicate_server() -> Iterator[FakeReplicate]:
    with served(FakeReplicate()) as fake:
        yield fake


@pytest.fixture
def replicate(replicate_server: FakeReplicate) -> Iterator[FakeReplicate]:
    """The fake Replicate, fresh; its predictions run for a long while (50 reads) unless
    cancelled. Reset after the test too, so that a throttle it set ends with it."""
    replicate_server.reset()
    replicate_server.outcome.polls = 50
    yield replicate_server
    replicate_server.reset()
