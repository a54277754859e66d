"""Redis clients that stand for separate worker processes (each its own connection to one
Redis), all closed together when the test is done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import redis.asyncio as aioredis

from tests.support.services import need, redis_url

T = TypeVar("T")


class RedisClients:
    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[aioredis.Redis] = []

    def connect(self) -> aioredis.Redis:
        """A new client, as another worker process would have."""
        client = aioredis.Redis.from_url(self.url)
        self.made.append(client)
        return client


@asynccontextmanager
async def redis_clients(url: str) -> AsyncIterator[RedisClients]:
    clients = RedisClients(url)
    try:
        yield clients
    finally:
        for client in clients.made:
            await client.aclose()


@asynccontextmanager
async def per_process(
    kind: str, in_memory: T, on_redis: Callable[[aioredis.Redis], T]
) -> AsyncIterator[Callable[[], T]]:
    """A maker of the state object each 'worker process' holds: with kind "memory", the one
    in-memory object they all share (as one process would); with "redis", a new object on a
    client of its own each time (the test Redis, db 12), sharing through Redis."""
    if kind == "memory":
        yield lambda: in_memory
        return
    need("redis")
    async with redis_clients(redis_url(12)) as clients:
        yield lambda: on_redis(clients.connect())
