"""The documents clients registered for Automatic Persisted Queries, by the SHA-256 of their
text: Redis when there is one, so a document registered through one API process is found by
every other; in memory when embedded (one process).

Anyone may register a document (that is the protocol), so the store is bounded: at most
`max_entries` documents of at most `max_bytes` each, the least recently registered or found
forgotten first. A forgotten document costs its client one more round trip, in which it sends
the text again. A hash names its text for good, so each process also keeps the documents it
used last in memory and asks Redis only for the others."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("kiln.persisted_queries")


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Documents(Protocol):
    max_bytes: int

    async def get(self, sha256: str) -> str | None: ...

    async def put(self, sha256: str, text: str) -> None:
        """Keeps `text` (whose hash the caller checked) unless it is longer than max_bytes."""
        ...


class _Recent:
    """At most `size` entries, the least recently used forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: str) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class MemoryDocuments:
    """For one process (embedded mode, tests)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._documents = _Recent(max_entries)

    async def get(self, sha256: str) -> str | None:
        return self._documents.get(sha256)

    async def put(self, sha256: str, text: str) -> None:
        if len(text.encode()) <= self.max_bytes:
            self._documents.put(sha256, text)

    def __len__(self) -> int:
        return len(self._documents)


# Registers a document and its time (a sorted set orders them), then forgets the oldest beyond
# the bound, in one step every process sees whole. An existing document is only touched.
_PUT = """
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    redis.call('HDEL', KEYS[1], oldest[i])
  end
end
return 1
"""


class RedisDocuments:
    """Shared by every API process: the texts in one hash, their last use in a sorted set. A
    Redis that does not answer makes a lookup a miss (the client then sends the text) and a
    registration a no-op, never a failed request."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        max_entries: int,
        max_bytes: int,
        local_entries: int,
    ) -> None:
        self.redis = client
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._texts = f"{prefix}:texts"
        self._used = f"{prefix}:used"
        self._put = client.register_script(_PUT)
        self._local = _Recent(local_entries)

    async def get(self, sha256: str) -> str | None:
        found = self._local.get(sha256)
        if found is not None:
            return found
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(self._texts, sha256)
                # Found: it counts as used now (only if still there: XX).
                pipe.zadd(self._used, {sha256: time.time()}, xx=True)
                text, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("persisted query lookup failed: %s", error)
            return None
        if text is None:
            return None
        found = text.decode()
        self._local.put(sha256, found)
        return found

    async def put(self, sha256: str, text: str) -> None:
        if len(text.encode()) > self.max_bytes or self._local.get(sha256) is not None:
            return
        try:
            await self._put(
                keys=[self._texts, self._used], args=[sha256, text, time.time(), self.max_entries]
            )
        except (RedisError, OSError) as error:
            log.warning("persisted query registration failed: %s", error)
            return
        self._local.put(sha256, text)
