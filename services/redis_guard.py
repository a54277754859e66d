"""Bookkeeping through Redis that must never fail the work it keeps books on.

The provider breakers and limits (services.breakers, services.provider_limits) ask Redis
around every provider call, and the rate limits (services.rate_limits) around every
operation. When Redis does not answer, the call that was paid for must still complete and a
request that needs only PostgreSQL must still be served: `RedisGuard.run` then returns
`UNREACHABLE` instead of raising, and its owner decides in the process (a local breaker, a
local share of the limit, a local count) and keeps what it could not write for later.

While Redis is down it is asked again at most every `retry_interval` seconds, so calls in
between are decided locally at once, and an unanswered command is given up after `timeout`
seconds (a stalled Redis, or one behind a lost network, holds no work). An outage is logged
once when it starts and once when it ends, and counted per call decided without Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis.exceptions

from observability.metrics import REDIS_DEGRADED, REDIS_FALLBACKS

T = TypeVar("T")
log = logging.getLogger("kiln.redis")

DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRY_INTERVAL = 1.0

# What a Redis that cannot be reached raises (OSError covers a builtin TimeoutError, which is
# what our own deadline raises). Any other error (a wrong script, a wrong type) is a bug and
# propagates.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


@dataclass(frozen=True)
class Unreachable:
    """Redis did not answer. `attempted`: the command was sent (it may still run later, as
    when a stalled Redis wakes up), rather than skipped because Redis failed moments ago."""

    attempted: bool


SKIPPED = Unreachable(attempted=False)
FAILED = Unreachable(attempted=True)


class RedisGuard:
    def __init__(
        self,
        component: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        on_outage: Callable[[], None] | None = None,
    ) -> None:
        self.component = component
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._on_outage = on_outage
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._fallbacks = REDIS_FALLBACKS.labels(component)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def resting(self) -> bool:
        """Redis failed less than `retry_interval` ago: it is not asked now."""
        return self._down_since is not None and time.monotonic() < self._retry_at

    async def run(
        self, operation: Callable[[], Awaitable[T]], *, decides: bool = True
    ) -> T | Unreachable:
        """`operation`'s result, or an Unreachable (never an exception) when Redis did not
        answer. The caller then decides without Redis; `decides=False` for commands that only
        catch up (sending what was kept), which are not counted as decisions made locally."""
        if self.resting:
            if decides:
                self._fallbacks.inc()
            return SKIPPED
        try:
            async with asyncio.timeout(self.timeout):
                result = await operation()
        except OUTAGE_ERRORS as error:
            self._failed(error)
            if decides:
                self._fallbacks.inc()
            return FAILED
        if self._down_since is not None:
            self._recovered()
        return result

    def _failed(self, error: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + self.retry_interval
        if self._down_since is not None:
            return
        self._down_since = now
        REDIS_DEGRADED.labels(self.component).set(1)
        log.warning(
            "Redis does not answer (%s: %s): %s are decided in this process until it does; "
            "counted in kiln_redis_fallbacks_total",
            type(error).__name__,
            error,
            self.component,
        )
        if self._on_outage is not None:
            self._on_outage()

    def _recovered(self) -> None:
        assert self._down_since is not None
        lasted = time.monotonic() - self._down_since
        self._down_since = None
        REDIS_DEGRADED.labels(self.component).set(0)
        log.info(
            "Redis answers again after %.1f s: %s are shared again",
            lasted,
            self.component,
        )
