"""Circuit breakers per provider, shared by every worker process through Redis (or kept in
memory when Kiln runs embedded in one process).

CLOSED: calls flow; failures are counted in a sliding window. Once the window holds at least
`min_calls` calls of which `failure_threshold` failed, the breaker OPENs for `cooldown`
seconds: routes through that provider are skipped. After the cooldown it is HALF_OPEN: one
probe call at a time is let through; its success closes the breaker, its failure opens it
again for another cooldown.

When Redis does not answer, the Redis breakers decide from a breaker of their own process
and keep the outcomes they could not write, to send once Redis answers (see RedisBreakers):
a provider result that was paid for is never thrown away because Redis blinked."""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import redis.asyncio as aioredis

from services.redis_guard import DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, RedisGuard, Unreachable


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


@dataclass(frozen=True)
class _Outcome:
    """A call's outcome as the record script takes it. `member` is unique per call, so an
    outcome sent twice (a stalled Redis ran a command we gave up on) counts once."""

    provider: str
    ok: bool
    at: float
    member: str


class RedisBreakers:
    """Keys per provider: `open` (exists while OPEN, expires after the cooldown), `tripped`
    (exists from opening until a probe succeeds: tripped without open means HALF_OPEN),
    `probe` (the half-open probe's lease) and `calls`/`fails` (sorted sets of the window).

    `allow` and `record` surround every provider call, so each is one script (one round
    trip, and atomic) instead of the two or three round trips of separate commands.

    Without Redis (services.redis_guard): each outage starts a breaker in this process,
    which opens on this process's own failures by the same policy (and starts open for a
    provider Redis refused within the last cooldown), and decides every call until Redis
    answers; outcomes that could not be written are kept (the newest `pending_limit`) and
    sent, still within their window, by the next call that reaches Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        policy: BreakerPolicy,
        prefix: str = "kiln:breaker",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        pending_limit: int = 1000,
    ) -> None:
        self.redis = client
        self.policy = policy
        self.prefix = prefix
        self._allow = client.register_script(_ALLOW)
        self._record = client.register_script(_RECORD)
        self._guard = RedisGuard(
            "provider breakers",
            timeout=timeout,
            retry_interval=retry_interval,
            on_outage=self._outage_started,
        )
        self._local = MemoryBreakers(policy)
        self._pending: deque[_Outcome] = deque(maxlen=pending_limit)
        self._sending = False
        # When Redis last refused a call per provider (monotonic): a breaker that was open
        # when Redis went away starts open in the process too.
        self._refused_at: dict[str, float] = {}

    def _key(self, provider: str, part: str) -> str:
        return f"{self.prefix}:{provider}:{part}"

    async def state(self, provider: str) -> CircuitState:
        await self._send_pending()
        answer = await self._guard.run(lambda: self._state(provider))
        if isinstance(answer, Unreachable):
            return await self._local.state(provider)
        return answer

    async def _state(self, provider: str) -> CircuitState:
        is_open, tripped = (
            await self.redis.exists(self._key(provider, "open")),
            await self.redis.exists(self._key(provider, "tripped")),
        )
        if is_open:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN if tripped else CircuitState.CLOSED

    async def allow(self, provider: str) -> bool:
        await self._send_pending()
        keys = [self._key(provider, p) for p in ("open", "tripped", "probe")]
        answer = await self._guard.run(
            lambda: self._allow(keys=keys, args=[int(self.policy.probe_timeout * 1000)])
        )
        if isinstance(answer, Unreachable):
            return await self._local.allow(provider)
        if not answer:
            self._refused_at[provider] = time.monotonic()
        return bool(answer)

    async def record(self, provider: str, ok: bool) -> None:
        await self._send_pending()
        now = time.time()
        outcome = _Outcome(provider, ok, now, f"{now}:{time.monotonic_ns()}")
        if isinstance(await self._guard.run(functools.partial(self._write, outcome)), Unreachable):
            await self._local.record(provider, ok)
            self._pending.append(outcome)

    async def _write(self, outcome: _Outcome) -> None:
        provider = outcome.provider
        await self._record(
            keys=[self._key(provider, p) for p in ("tripped", "probe", "calls", "fails", "open")],
            args=[
                1 if outcome.ok else 0,
                outcome.at,
                outcome.member,
                outcome.at - self.policy.window,
                int(self.policy.window) + 1,
                self.policy.min_calls,
                self.policy.failure_threshold,
                int(self.policy.cooldown * 1000),
            ],
        )

    async def _send_pending(self) -> None:
        """Send the outcomes kept during an outage, oldest first, once Redis answers (one
        sender at a time); those that left the window meanwhile no longer count."""
        if not self._pending or self._sending or self._guard.resting:
            return
        self._sending = True
        try:
            while self._pending:
                outcome = self._pending[0]
                if outcome.at > time.time() - self.policy.window:
                    answer = await self._guard.run(
                        functools.partial(self._write, outcome), decides=False
                    )
                    if isinstance(answer, Unreachable):
                        return
                if self._pending and self._pending[0] is outcome:
                    self._pending.popleft()  # (unless a full deque dropped it meanwhile)
        finally:
            self._sending = False

    def _outage_started(self) -> None:
        self._local = MemoryBreakers(self.policy)
        now = time.monotonic()
        for provider, at in self._refused_at.items():
            if now - at < self.policy.cooldown:
                self._local.open_until(provider, at + self.policy.cooldown)


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

    def open_until(self, provider: str, until: float) -> None:
        """Open `provider`'s breaker until the monotonic time `until`, then half-open."""
        local = self._of(provider)
        self._trip(local, until - self.policy.cooldown)

    def _trip(self, local: _Local, now: float) -> None:
        local.tripped = True
        local.open_until = now + self.policy.cooldown
        local.probe_until = 0.0
        local.calls, local.fails = [], []
