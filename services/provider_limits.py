"""Limits on what Kiln asks of each provider: at most `max_concurrent` calls in flight and
`per_minute` requests per minute, shared by every worker process through Redis (in memory
when embedded). Work over a limit is not failed: the caller is told how long to wait and
sends its job again with that delay.

When Redis does not answer, the Redis limiter keeps each process to its fair share of each
limit, and gives back the leases it could not give back once Redis answers (see
RedisLimiter): a provider call that was paid for is never failed because Redis blinked."""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from services.redis_guard import (
    DEFAULT_RETRY_INTERVAL,
    DEFAULT_TIMEOUT,
    RedisGuard,
    Unreachable,
)


@dataclass(frozen=True)
class ProviderLimit:
    max_concurrent: int | None = None
    per_minute: int | None = None
    # A lease older than this is presumed lost (its worker died) and frees its slot.
    lease_seconds: float = 900.0


@dataclass(frozen=True)
class Lease:
    provider: str
    token: str


@dataclass(frozen=True)
class Wait:
    seconds: float


class Limiter(Protocol):
    async def acquire(self, provider: str) -> Lease | Wait: ...

    async def release(self, lease: Lease) -> None: ...


# Atomically: note this process among the provider's recent users, drop expired leases,
# check the per-minute counter and the in-flight set, then take a slot. Returns
# {1, 0, sharers} on success or {0, wait_ms, sharers}: `sharers` is how many processes asked
# for this provider within SHARERS_WINDOW_MS (this one included).
_ACQUIRE = """
local inflight, minute, sharers = KEYS[1], KEYS[2], KEYS[3]
local now_ms, lease_ms, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local max_concurrent, per_minute = tonumber(ARGV[4]), tonumber(ARGV[5])
local process, sharers_ms = ARGV[6], tonumber(ARGV[7])
redis.call('ZADD', sharers, now_ms, process)
redis.call('ZREMRANGEBYSCORE', sharers, '-inf', now_ms - sharers_ms)
redis.call('PEXPIRE', sharers, sharers_ms)
local sharing = redis.call('ZCARD', sharers)
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now_ms)
if per_minute > 0 then
  local used = tonumber(redis.call('GET', minute) or '0')
  if used >= per_minute then
    return {0, 60000 - (now_ms % 60000), sharing}
  end
end
if max_concurrent > 0 and redis.call('ZCARD', inflight) >= max_concurrent then
  return {0, 250, sharing}
end
redis.call('ZADD', inflight, now_ms + lease_ms, token)
redis.call('PEXPIRE', inflight, lease_ms)
if per_minute > 0 then
  redis.call('INCR', minute)
  redis.call('PEXPIRE', minute, 61000)
end
return {1, 0, sharing}
"""
# A process that asked for a provider within this long counts among those sharing its limit.
SHARERS_WINDOW_MS = 120_000
# Tokens of leases taken without Redis (from the process's own share) start with this.
LOCAL_TOKEN = "local:"


class RedisLimiter:
    """Without Redis (services.redis_guard), each outage gives the process a limiter of its
    own holding its **fair share** of each limit: the limit divided by the number of
    processes that asked for that provider in the last two minutes, as Redis last said,
    rounded up (a process that never asked knows of nobody to share with: the whole limit).
    Together the processes then stay within the limit (plus at most one call each, from the
    rounding), where the whole limit per process would multiply it by their number just
    when a provider may be struggling too; the number of processes is not configured
    anywhere, so it is learned from Redis while Redis answers.

    A lease that could not be given back (and one whose taking timed out: a stalled Redis may
    still run it) is kept, the newest `pending_limit` of them, and given back by the next
    call that reaches Redis; past that bound it frees its slot when it expires
    (`lease_seconds`). Leases taken during the outage are the process's own and go back to
    its own limiter, wherever they are released."""

    def __init__(
        self,
        client: aioredis.Redis,
        limits: dict[str, ProviderLimit],
        prefix: str = "kiln:limit",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        pending_limit: int = 10_000,
    ) -> None:
        self.redis = client
        self.limits = limits
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._process = uuid.uuid4().hex
        self._guard = RedisGuard(
            "provider limits",
            timeout=timeout,
            retry_interval=retry_interval,
            on_outage=self._outage_started,
        )
        self._sharers: dict[str, int] = {}
        self._local = MemoryLimiter({})
        self._unreleased: deque[Lease] = deque(maxlen=pending_limit)

    def _inflight(self, provider: str) -> str:
        return f"{self.prefix}:{provider}:inflight"

    async def acquire(self, provider: str) -> Lease | Wait:
        limit = self.limits.get(provider)
        if limit is None or (limit.max_concurrent is None and limit.per_minute is None):
            return Lease(provider, "")
        await self._release_pending()
        # Only now: uuid4 reads os.urandom, a syscall that a provider without limits (every
        # call of most of them) need not pay for.
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        answer = await self._guard.run(
            lambda: self._acquire(
                keys=[
                    self._inflight(provider),
                    f"{self.prefix}:{provider}:minute:{now_ms // 60000}",
                    f"{self.prefix}:{provider}:sharers",
                ],
                args=[
                    now_ms,
                    int(limit.lease_seconds * 1000),
                    token,
                    limit.max_concurrent or 0,
                    limit.per_minute or 0,
                    self._process,
                    SHARERS_WINDOW_MS,
                ],
            )
        )
        if isinstance(answer, Unreachable):
            if answer.attempted:
                self._unreleased.append(Lease(provider, token))  # it may have been taken
            local = await self._local.acquire(provider)
            return Lease(provider, LOCAL_TOKEN + local.token) if isinstance(local, Lease) else local
        taken, wait_ms, sharing = answer
        self._sharers[provider] = int(sharing)
        return Lease(provider, token) if int(taken) else Wait(int(wait_ms) / 1000)

    async def release(self, lease: Lease) -> None:
        if not lease.token:
            return
        if lease.token.startswith(LOCAL_TOKEN):
            await self._local.release(Lease(lease.provider, lease.token[len(LOCAL_TOKEN) :]))
            return
        await self._release_pending()
        answer = await self._guard.run(
            lambda: self.redis.zrem(self._inflight(lease.provider), lease.token)
        )
        if isinstance(answer, Unreachable):
            self._unreleased.append(lease)

    async def _release_pending(self) -> None:
        """Give back, in one round trip, the leases kept while Redis did not answer."""
        if not self._unreleased or self._guard.resting:
            return
        leases = list(self._unreleased)

        async def release_all() -> None:
            async with self.redis.pipeline(transaction=False) as pipeline:
                for lease in leases:
                    pipeline.zrem(self._inflight(lease.provider), lease.token)
                await pipeline.execute()

        if isinstance(await self._guard.run(release_all, decides=False), Unreachable):
            return
        for _ in leases:
            if self._unreleased:
                self._unreleased.popleft()

    def _outage_started(self) -> None:
        self._local = MemoryLimiter(
            {provider: self._share(provider, limit) for provider, limit in self.limits.items()}
        )

    def _share(self, provider: str, limit: ProviderLimit) -> ProviderLimit:
        sharing = max(1, self._sharers.get(provider, 1))

        def part(value: int | None) -> int | None:
            return None if value is None else max(1, math.ceil(value / sharing))

        return ProviderLimit(
            max_concurrent=part(limit.max_concurrent),
            per_minute=part(limit.per_minute),
            lease_seconds=limit.lease_seconds,
        )


class MemoryLimiter:
    def __init__(self, limits: dict[str, ProviderLimit]) -> None:
        self.limits = limits
        self._inflight: dict[str, dict[str, float]] = {}
        self._minutes: dict[str, tuple[int, int]] = {}

    async def acquire(self, provider: str) -> Lease | Wait:
        limit = self.limits.get(provider)
        if limit is None:
            return Lease(provider, "")
        now = time.time()
        inflight = {t: exp for t, exp in self._inflight.get(provider, {}).items() if exp > now}
        self._inflight[provider] = inflight
        minute, used = self._minutes.get(provider, (int(now // 60), 0))
        if minute != int(now // 60):
            minute, used = int(now // 60), 0
        if limit.per_minute is not None and used >= limit.per_minute:
            return Wait(60 - now % 60)
        if limit.max_concurrent is not None and len(inflight) >= limit.max_concurrent:
            return Wait(0.25)
        token = uuid.uuid4().hex
        inflight[token] = now + limit.lease_seconds
        self._minutes[provider] = (minute, used + 1)
        return Lease(provider, token)

    async def release(self, lease: Lease) -> None:
        self._inflight.get(lease.provider, {}).pop(lease.token, None)
