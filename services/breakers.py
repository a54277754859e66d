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


class RedisBreakers:
    """Keys per provider: `open` (exists while OPEN, expires after the cooldown), `tripped`
    (exists from opening until a probe succeeds: tripped without open means HALF_OPEN),
    `probe` (the half-open probe's lease) and `calls`/`fails` (sorted sets of the window)."""

    def __init__(
        self, client: aioredis.Redis, policy: BreakerPolicy, prefix: str = "kiln:breaker"
    ) -> None:
        self.redis = client
        self.policy = policy
        self.prefix = prefix

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
        current = await self.state(provider)
        if current is CircuitState.CLOSED:
            return True
        if current is CircuitState.OPEN:
            return False
        lease = int(self.policy.probe_timeout * 1000)
        return bool(await self.redis.set(self._key(provider, "probe"), "1", nx=True, px=lease))

    async def record(self, provider: str, ok: bool) -> None:
        if await self.redis.exists(self._key(provider, "tripped")):
            if ok:
                await self.redis.delete(
                    *(self._key(provider, p) for p in ("tripped", "probe", "calls", "fails"))
                )
            else:
                await self._trip(provider)
            return
        now = time.time()
        member = f"{now}:{time.monotonic_ns()}"
        horizon = now - self.policy.window
        async with self.redis.pipeline(transaction=True) as pipe:
            for part in ("calls", "fails") if not ok else ("calls",):
                key = self._key(provider, part)
                pipe.zadd(key, {member: now})
                pipe.expire(key, int(self.policy.window) + 1)
            for part in ("calls", "fails"):
                pipe.zremrangebyscore(self._key(provider, part), 0, horizon)
            pipe.zcard(self._key(provider, "calls"))
            pipe.zcard(self._key(provider, "fails"))
            *_, calls, fails = await pipe.execute()
        if not ok and calls >= self.policy.min_calls and fails >= self.policy.failure_threshold:
            await self._trip(provider)

    async def _trip(self, provider: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(provider, "open"), "1", px=int(self.policy.cooldown * 1000))
            pipe.set(self._key(provider, "tripped"), "1")
            pipe.delete(
                self._key(provider, "probe"),
                self._key(provider, "calls"),
                self._key(provider, "fails"),
            )
            await pipe.execute()


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
