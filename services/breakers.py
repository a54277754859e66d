"""Circuit breakers per provider, shared by every worker process through Redis (or kept in
memory when Kiln runs embedded in one process).

CLOSED: calls flow; failures are counted in a sliding window. Once the window holds at least
`min_calls` calls of which `failure_threshold` failed, the breaker OPENs for `cooldown`
seconds: routes through that provider are skipped. After the cooldown it is HALF_OPEN: one
probe call at a time is let through; its success closes the breaker, its failure opens it
again for another cooldown."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import redis.asyncio as aioredis


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5
    min_calls: int = 5
    window: float = 60.0
    cooldown: float = 30.0
    # How long a half-open probe may take before another one is let through.
    probe_timeout: float = 60.0


class Breakers(Protocol):
    async def allow(self, provider: str) -> bool: ...

    async def record(self, provider: str, ok: bool) -> None: ...

    async def state(self, provider: str) -> CircuitState: ...


# The breaker's decision in one round trip (it is asked before every provider call):
# OPEN -> 0; CLOSED -> 1; HALF_OPEN -> 1 for whoever takes the probe's lease, else 0.
_ALLOW = """
local open, tripped, probe = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', open) == 1 then return 0 end
if redis.call('EXISTS', tripped) == 0 then return 1 end
if redis.call('SET', probe, '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""

# A call's outcome in one round trip (it follows every provider call), atomically: while
# tripped, a success closes the breaker and a failure opens it again; otherwise the call
# joins the window, which is trimmed, and a failure that brings the window to the policy's
# counts trips it. Returns 1 when this call tripped (or re-tripped) the breaker.
_RECORD = """
local tripped, probe, calls, fails, open = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ok = ARGV[1] == '1'
local now, member, horizon, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local min_calls, threshold, cooldown_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local function trip()
  redis.call('SET', open, '1', 'PX', cooldown_ms)
  redis.call('SET', tripped, '1')
  redis.call('DEL', probe, calls, fails)
end
if redis.call('EXISTS', tripped) == 1 then
  if ok then redis.call('DEL', tripped, probe, calls, fails) return 0 end
  trip()
  return 1
end
redis.call('ZADD', calls, now, member)
redis.call('EXPIRE', calls, ttl)
if not ok then
  redis.call('ZADD', fails, now, member)
  redis.call('EXPIRE', fails, ttl)
end
redis.call('ZREMRANGEBYSCORE', calls, 0, horizon)
redis.call('ZREMRANGEBYSCORE', fails, 0, horizon)
if not ok and redis.call('ZCARD', calls) >= min_calls
    and redis.call('ZCARD', fails) >= threshold then
  trip()
  return 1
end
return 0
"""


class RedisBreakers:
    """Keys per provider: `open` (exists while OPEN, expires after the cooldown), `tripped`
    (exists from opening until a probe succeeds: tripped without open means HALF_OPEN),
    `probe` (the half-open probe's lease) and `calls`/`fails` (sorted sets of the window).

    `allow` and `record` surround every provider call, so each is one script (one round
    trip, and atomic) instead of the two or three round trips of separate commands."""

    def __init__(
        self, client: aioredis.Redis, policy: BreakerPolicy, prefix: str = "kiln:breaker"
    ) -> None:
        self.redis = client
        self.policy = policy
        self.prefix = prefix
        self._allow = client.register_script(_ALLOW)
        self._record = client.register_script(_RECORD)

    def _key(self, provider: str, part: str) -> str:
        return f"{self.prefix}:{provider}:{part}"

    async def state(self, provider: str) -> CircuitState:
        is_open, tripped = (
            await self.redis.exists(self._key(provider, "open")),
            await self.redis.exists(self._key(provider, "tripped")),
        )
        if is_open:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN if tripped else CircuitState.CLOSED

    async def allow(self, provider: str) -> bool:
        keys = [self._key(provider, p) for p in ("open", "tripped", "probe")]
        return bool(await self._allow(keys=keys, args=[int(self.policy.probe_timeout * 1000)]))

    async def record(self, provider: str, ok: bool) -> None:
        now = time.time()
        await self._record(
            keys=[self._key(provider, p) for p in ("tripped", "probe", "calls", "fails", "open")],
            args=[
                1 if ok else 0,
                now,
                f"{now}:{time.monotonic_ns()}",
                now - self.policy.window,
                int(self.policy.window) + 1,
                self.policy.min_calls,
                self.policy.failure_threshold,
                int(self.policy.cooldown * 1000),
            ],
        )


@dataclass
class _Local:
    calls: list[float]
    fails: list[float]
    open_until: float = 0.0
    tripped: bool = False
    probe_until: float = 0.0


class MemoryBreakers:
    """The same rules for one process (embedded mode)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self._state: dict[str, _Local] = {}

    def _of(self, provider: str) -> _Local:
        return self._state.setdefault(provider, _Local([], []))

    async def state(self, provider: str) -> CircuitState:
        local = self._of(provider)
        if local.tripped and time.monotonic() < local.open_until:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN if local.tripped else CircuitState.CLOSED

    async def allow(self, provider: str) -> bool:
        current = await self.state(provider)
        if current is not CircuitState.HALF_OPEN:
            return current is CircuitState.CLOSED
        local = self._of(provider)
        now = time.monotonic()
        if now < local.probe_until:
            return False
        local.probe_until = now + self.policy.probe_timeout
        return True

    async def record(self, provider: str, ok: bool) -> None:
        local = self._of(provider)
        now = time.monotonic()
        if local.tripped:
            if ok:
                self._state[provider] = _Local([], [])
            else:
                self._trip(local, now)
            return
        horizon = now - self.policy.window
        local.calls = [t for t in local.calls if t > horizon] + [now]
        local.fails = [t for t in local.fails if t > horizon] + ([] if ok else [now])
        if (
            not ok
            and len(local.calls) >= self.policy.min_calls
            and len(local.fails) >= self.policy.failure_threshold
        ):
            self._trip(local, now)

    def _trip(self, local: _Local, now: float) -> None:
        local.tripped = True
        local.open_until = now + self.policy.cooldown
        local.probe_until = 0.0
        local.calls, local.fails = [], []
