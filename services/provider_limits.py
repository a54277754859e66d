"""Limits on what Kiln asks of each provider: at most `max_concurrent` calls in flight and
`per_minute` requests per minute, shared by every worker process through Redis (in memory
when embedded). Work over a limit is not failed: the caller is told how long to wait and
sends its job again with that delay."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis


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


# Atomically: drop expired leases, check the per-minute counter and the in-flight set, then
# take a slot. Returns {1, 0} on success or {0, wait_ms}.
_ACQUIRE = """
local inflight, minute = KEYS[1], KEYS[2]
local now_ms, lease_ms, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local max_concurrent, per_minute = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now_ms)
if per_minute > 0 then
  local used = tonumber(redis.call('GET', minute) or '0')
  if used >= per_minute then
    return {0, 60000 - (now_ms % 60000)}
  end
end
if max_concurrent > 0 and redis.call('ZCARD', inflight) >= max_concurrent then
  return {0, 250}
end
redis.call('ZADD', inflight, now_ms + lease_ms, token)
redis.call('PEXPIRE', inflight, lease_ms)
if per_minute > 0 then
  redis.call('INCR', minute)
  redis.call('PEXPIRE', minute, 61000)
end
return {1, 0}
"""


class RedisLimiter:
    def __init__(
        self, client: aioredis.Redis, limits: dict[str, ProviderLimit], prefix: str = "kiln:limit"
    ) -> None:
        self.redis = client
        self.limits = limits
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)

    async def acquire(self, provider: str) -> Lease | Wait:
        limit = self.limits.get(provider)
        if limit is None or (limit.max_concurrent is None and limit.per_minute is None):
            return Lease(provider, "")
        # Only now: uuid4 reads os.urandom, a syscall that a provider without limits (every
        # call of most of them) need not pay for.
        token = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        taken, wait_ms = await self._acquire(
            keys=[
                f"{self.prefix}:{provider}:inflight",
                f"{self.prefix}:{provider}:minute:{now_ms // 60000}",
            ],
            args=[
                now_ms,
                int(limit.lease_seconds * 1000),
                token,
                limit.max_concurrent or 0,
                limit.per_minute or 0,
            ],
        )
        return Lease(provider, token) if int(taken) else Wait(int(wait_ms) / 1000)

    async def release(self, lease: Lease) -> None:
        if lease.token:
            await self.redis.zrem(f"{self.prefix}:{lease.provider}:inflight", lease.token)


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
