"""Redis clients that stand for separate worker processes (each its own connection to one
Redis), all closed together when the test is done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis


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
