"""Redis fixtures for the hub tests: a plain admin client and a factory of RedisHubs that are
closed on teardown. Every hub made by one test shares a client name, so CLIENT LIST can tell
its connections from anyone else's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from realtime.hub import RedisHub
from tests.support.services import need, redis_url

REDIS_DB = 13


@pytest.fixture
async def redis_admin() -> AsyncIterator[aioredis.Redis]:
    need("redis")
    client = aioredis.Redis.from_url(redis_url(REDIS_DB), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def client_name() -> str:
    return f"kiln-test-hub-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def hub_url(client_name: str) -> str:
    """The Redis URL for this test's hubs (callers that connect must call need("redis"))."""
    return f"{redis_url(REDIS_DB)}?client_name={client_name}"


@pytest.fixture
async def make_redis_hub(hub_url: str) -> AsyncIterator[Callable[..., RedisHub]]:
    need("redis")
    hubs: list[RedisHub] = []

    def make(cls: type[RedisHub] = RedisHub, **kwargs) -> RedisHub:
        hub = cls(hub_url, **kwargs)
        hubs.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in hubs:
            await hub.close()


@pytest.fixture
def channel_prefix() -> str:
    """Pub/sub channels are not per-db in Redis, so every test uses its own names."""
    return f"kiln:test:{uuid.uuid4().hex}"
