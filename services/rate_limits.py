"""Counting windows shared by every API process: login failures per email, and operations per
user (or per client IP for anonymous callers), queries apart from mutations and subscriptions.
Redis when there is one, so every process agrees; in memory when embedded (one process).
While Redis does not answer, each process counts its own callers (services.redis_guard): the
limits still hold, per process, and requests that need only PostgreSQL are still served.

A window opens with its first hit and lasts `window` seconds (a fixed window per key, like
services.provider_limits); a hit past the limit is refused with the seconds left."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from models.user import User
from services.errors import RateLimited
from services.redis_guard import RedisGuard, Unreachable
from settings import Settings


@dataclass(frozen=True)
class Window:
    count: int  # hits in the window, this one included
    reset_after: float  # seconds until the window closes


class Counters(Protocol):
    async def hit(self, key: str, window: float, cost: int = 1) -> Window: ...

    async def clear(self, key: str) -> None: ...


# Atomically add `cost` and start the window's clock on its first hit; returns the count and
# the milliseconds left. A key somehow left without an expiry gets one.
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""


class RedisCounters:
    def __init__(self, client: aioredis.Redis, prefix: str = "kiln:rate") -> None:
        self.redis = client
        self.prefix = prefix
        self._hit = client.register_script(_HIT)
        self._guard = RedisGuard("rate limits")
        self._local = MemoryCounters()  # while Redis does not answer

    async def hit(self, key: str, window: float, cost: int = 1) -> Window:
        shared = await self._guard.run(
            lambda: self._hit(
                keys=[f"{self.prefix}:{key}"], args=[cost, max(1, int(window * 1000))]
            )
        )
        if isinstance(shared, Unreachable):
            return await self._local.hit(key, window, cost)
        count, ttl_ms = shared
        return Window(int(count), int(ttl_ms) / 1000)

    async def clear(self, key: str) -> None:
        await self._local.clear(key)
        await self._guard.run(lambda: self.redis.delete(f"{self.prefix}:{key}"), decides=False)


class MemoryCounters:
    """For one process (embedded mode, tests). Expired windows are dropped as keys are hit."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (closes at, count)

    async def hit(self, key: str, window: float, cost: int = 1) -> Window:
        now = time.monotonic()
        if len(self._windows) > 10_000:  # keep memory bounded under a flood of keys
            self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        closes, count = self._windows.get(key, (0.0, 0))
        if closes <= now:
            closes, count = now + window, 0
        count += cost
        self._windows[key] = (closes, count)
        return Window(count, closes - now)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)


def retry_after(window: Window) -> int:
    """Whole seconds, at least one (clients sleep on it). Rounded to the millisecond first:
    `closes - now` of a window just opened can come out a hair above its length in floating
    point, which would announce 61 s for a 60 s window."""
    return max(1, math.ceil(round(window.reset_after, 3)))


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_after: int


def operation_limit(user: User | None, settings: Settings, *, reads: bool = False) -> int:
    """The caller's budget per window: for queries (`reads`) or for mutations and
    subscriptions."""
    if reads:
        if user is None:
            return settings.query_rate_limit_per_ip
        if user.priority:
            return settings.query_rate_limit_per_priority_user
        return settings.query_rate_limit_per_user
    if user is None:
        return settings.rate_limit_per_ip
    return settings.rate_limit_per_priority_user if user.priority else settings.rate_limit_per_user


async def spend(
    counters: Counters,
    user: User | None,
    client_ip: str,
    cost: int,
    settings: Settings,
    *,
    reads: bool = False,
) -> Quota:
    """Count `cost` operations (root fields) against the caller's window: the user's own, or
    the client IP's when anonymous; queries (`reads`) in windows of their own. Raises
    RateLimited past it."""
    limit = operation_limit(user, settings, reads=reads)
    kind = "reads" if reads else "ops"
    key = f"{kind}:user:{user.id}" if user is not None else f"{kind}:ip:{client_ip}"
    window = await counters.hit(key, settings.rate_limit_window_seconds, cost)
    if window.count > limit:
        raise RateLimited(retry_after(window), "Too many requests; try again in a little while.")
    return Quota(limit, limit - window.count, retry_after(window))
