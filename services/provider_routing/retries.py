"""One call to one provider: retries with exponential backoff and jitter that honour the
provider's Retry-After, capped in attempts and in total wait; breaker accounting per call;
metrics and an error event for every failed call. Which route to call is `failover`'s."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
)
from tenacity.stop import stop_base

from models.error_event import ErrorCategory, Severity
from observability.metrics import provider_call
from providers.base import ProviderError
from services.breakers import Breakers
from services.error_events import Occurrence, record
from services.provider_routing.call_context import current_generation, current_request

T = TypeVar("T")

# Failures that say the provider is unwell (not that our request was wrong).
BREAKER_FAILURES = frozenset(
    {
        "PROVIDER_TIMEOUT",
        "PROVIDER_UNAVAILABLE",
        "PROVIDER_RATE_LIMITED",
        "PROVIDER_BAD_RESPONSE",
        "PROVIDER_AUTH",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    # Never sleep longer than this in total for one call; a longer Retry-After ends the
    # retries (the router fails over, or the job is sent again later).
    max_total_wait: float = 20.0


async def _record_failure(provider: str, error: ProviderError) -> None:
    """Every failed provider call is an error event, grouped per provider and code."""
    generation = current_generation.get()
    await record(
        Occurrence(
            severity=Severity.WARNING,
            category=ErrorCategory.API,
            message=f"{provider} call failed: {error.code}",
            error_code=error.code,
            request_id=current_request.get(),
            function_name=f"providers.{provider}",
            metadata={
                "provider": provider,
                "statusCode": error.status_code,
                "detail": error.message[:300],
                "generationId": str(generation) if generation else None,
            },
        )
    )


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.retryable


class _Backoff(stop_base):
    # Both the wait strategy and a stop condition: they share the running total.

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.waited = 0.0

    def wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter, or the provider's Retry-After."""
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after if isinstance(error, ProviderError) else None
        if hint is not None:
            delay = hint
        else:
            ceiling = min(
                self.policy.max_delay, self.policy.base_delay * 2 ** (state.attempt_number - 1)
            )
            delay = random.uniform(0, ceiling)
        self.waited += delay
        return delay

    def __call__(self, state: RetryCallState) -> bool:
        """Stop when the next wait would go over the total budget."""
        error = state.outcome.exception() if state.outcome else None
        hint = error.retry_after if isinstance(error, ProviderError) else None
        upcoming = hint if hint is not None else 0.0
        return self.waited + upcoming > self.policy.max_total_wait


async def call(
    provider: str,
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    breakers: Breakers,
    *,
    stopped: tuple[type[BaseException], ...] = (),
) -> T:
    """Run one provider operation with retries. Raises the last ProviderError when retries
    are exhausted or the error is not retryable (400/401/403/404/422, content rejected)."""
    backoff = _Backoff(policy)
    retrying = AsyncRetrying(
        retry=retry_if_exception(_retryable),
        stop=stop_any(stop_after_attempt(policy.attempts), backoff),
        wait=backoff.wait,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            with provider_call(provider, stopped=stopped):
                try:
                    result = await operation()
                except ProviderError as error:
                    if error.code in BREAKER_FAILURES:
                        await breakers.record(provider, ok=False)
                    await _record_failure(provider, error)
                    raise
            await breakers.record(provider, ok=True)
    return result
