"""The persisted query store, in memory and in Redis: bounded in count and size, the least
recently used forgotten first, shared by every process through Redis, and a Redis that does
not answer turns lookups into misses rather than failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from services.persisted_queries import Documents, MemoryDocuments, RedisDocuments, sha256_of
from tests.support.services import need, redis_url

REDIS_DB = 12
MAX_ENTRIES = 5
MAX_BYTES = 200


def text(number: int) -> str:
    return f"query Q{number} {{ models {{ id }} }}"


@pytest.fixture
async def redis_documents() -> AsyncIterator[Callable[..., RedisDocuments]]:
    """A maker of stores sharing one namespace, each as another API process would hold it."""
    need("redis")
    prefix = f"test:apq:{uuid.uuid4().hex}"
    clients: list[aioredis.Redis] = []

    def make(local_entries: int = 2) -> RedisDocuments:
        client = aioredis.Redis.from_url(redis_url(REDIS_DB))
        clients.append(client)
        return RedisDocuments(
            client,
            prefix=prefix,
            max_entries=MAX_ENTRIES,
            max_bytes=MAX_BYTES,
            local_entries=local_entries,
        )

    try:
        yield make
    finally:
        if clients:
            await clients[0].delete(f"{prefix}:texts", f"{prefix}:used")
        for client in clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def documents(request, redis_documents) -> Documents:
    if request.param == "memory":
        return MemoryDocuments(MAX_ENTRIES, MAX_BYTES)
    # No local copies: every lookup below is Redis's answer.
    return redis_documents(local_entries=0)


async def test_documents_are_kept_by_hash_up_to_the_bounds(documents):
    for number in range(MAX_ENTRIES):
        await documents.put(sha256_of(text(number)), text(number))
    assert await documents.get(sha256_of(text(0))) == text(0)  # now the most recently used
    for number in range(MAX_ENTRIES, MAX_ENTRIES + 3):
        await documents.put(sha256_of(text(number)), text(number))
    kept = [n for n in range(MAX_ENTRIES + 3) if await documents.get(sha256_of(text(n)))]
    assert kept == [0, 4, 5, 6, 7]
    long = "query Long { models { id } }" + " " * MAX_BYTES
    await documents.put(sha256_of(long), long)
    assert await documents.get(sha256_of(long)) is None


async def test_processes_share_documents_through_redis(redis_documents):
    first, second = redis_documents(), redis_documents()
    await first.put(sha256_of(text(1)), text(1))
    assert await second.get(sha256_of(text(1))) == text(1)
    assert await second.get(sha256_of(text(2))) is None


async def test_concurrent_registrations_keep_the_bound(redis_documents):
    stores = [redis_documents(local_entries=0) for _ in range(3)]
    await asyncio.gather(
        *[stores[n % 3].put(sha256_of(text(n)), text(n)) for n in range(4 * MAX_ENTRIES)]
    )
    found = [n for n in range(4 * MAX_ENTRIES) if await stores[0].get(sha256_of(text(n)))]
    assert len(found) == MAX_ENTRIES


async def test_a_redis_that_does_not_answer_makes_misses_not_failures():
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    store = RedisDocuments(
        client, prefix="test:apq:down", max_entries=5, max_bytes=200, local_entries=0
    )
    try:
        await store.put(sha256_of(text(1)), text(1))
        assert await store.get(sha256_of(text(1))) is None
    finally:
        await client.aclose()
