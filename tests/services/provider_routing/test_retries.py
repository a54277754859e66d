from __future__ import annotations

import asyncio

import pytest

from providers.base import ProviderError
from services.breakers import BreakerPolicy, CircuitState, MemoryBreakers
from services.provider_routing import retries
from services.provider_routing.retries import RetryPolicy

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01, max_total_wait=1.0)


class Flaky:
    """Fails with the given errors in order, then answers "ok"."""

    def __init__(self, *errors: ProviderError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def unavailable(**kw) -> ProviderError:
    return ProviderError("PROVIDER_UNAVAILABLE", "500", status_code=500, **kw)


async def test_retryable_failures_are_retried_until_success():
    breakers = MemoryBreakers(BreakerPolicy())
    flaky = Flaky(unavailable(), ProviderError("PROVIDER_TIMEOUT", "slow"))
    assert await retries.call("acme", flaky, FAST, breakers) == "ok"
    assert flaky.calls == 3


async def test_retry_after_is_honoured_instead_of_the_backoff():
    # Backoff alone would sleep up to a minute here; the provider asked for 10 ms.
    slow_backoff = RetryPolicy(attempts=2, base_delay=60, max_delay=60, max_total_wait=120)
    flaky = Flaky(ProviderError("PROVIDER_RATE_LIMITED", "429", retry_after=0.01))
    async with asyncio.timeout(10):
        assert (
            await retries.call("acme", flaky, slow_backoff, MemoryBreakers(BreakerPolicy())) == "ok"
        )
    assert flaky.calls == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(status):
    code = "PROVIDER_AUTH" if status in (401, 403) else "PROVIDER_REJECTED"
    flaky = Flaky(ProviderError(code, "no", retryable=False, status_code=status))
    with pytest.raises(ProviderError):
        await retries.call("acme", flaky, FAST, MemoryBreakers(BreakerPolicy()))
    assert flaky.calls == 1


async def test_attempts_and_total_wait_are_capped():
    endless = Flaky(*[unavailable() for _ in range(10)])
    with pytest.raises(ProviderError):
        await retries.call("acme", endless, FAST, MemoryBreakers(BreakerPolicy()))
    assert endless.calls == FAST.attempts
    patient = Flaky(ProviderError("PROVIDER_RATE_LIMITED", "429", retry_after=30))
    with pytest.raises(ProviderError):  # a 30 s Retry-After is over the 1 s budget
        await retries.call("acme", patient, FAST, MemoryBreakers(BreakerPolicy()))
    assert patient.calls == 1


async def test_provider_failures_feed_the_breaker_but_our_mistakes_do_not():
    breakers = MemoryBreakers(BreakerPolicy(failure_threshold=3, min_calls=3, cooldown=60))
    for _ in range(3):
        with pytest.raises(ProviderError):
            await retries.call(
                "picky",
                Flaky(ProviderError("CONTENT_REJECTED", "no", retryable=False)),
                FAST,
                breakers,
            )
    assert await breakers.state("picky") is CircuitState.CLOSED
    with pytest.raises(ProviderError):
        await retries.call("down", Flaky(*[unavailable() for _ in range(4)]), FAST, breakers)
    assert await breakers.state("down") is CircuitState.OPEN


async def test_the_wait_budget_counts_the_upcoming_wait_after_adding_it():
    """The order tenacity had: the wait is added to the total, then the budget is checked
    with the upcoming wait on top. 30 ms hints against a 100 ms budget: three calls."""
    budget = RetryPolicy(attempts=10, base_delay=0.001, max_delay=0.01, max_total_wait=0.1)
    hinted = Flaky(*[ProviderError("PROVIDER_RATE_LIMITED", "429", retry_after=0.03)] * 10)
    with pytest.raises(ProviderError):
        await retries.call("acme", hinted, budget, MemoryBreakers(BreakerPolicy()))
    assert hinted.calls == 3


async def test_other_exceptions_are_not_retried_and_successes_feed_the_breaker():
    breakers = MemoryBreakers(BreakerPolicy(failure_threshold=1, min_calls=1, cooldown=0.05))
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        await retries.call("acme", broken, FAST, breakers)
    assert calls == 1
    assert await breakers.state("acme") is CircuitState.CLOSED  # our bug, not the provider's
    with pytest.raises(ProviderError):
        await retries.call("acme", Flaky(*[unavailable()] * 4), FAST, breakers)
    await asyncio.sleep(0.06)
    assert await breakers.allow("acme")  # the half-open probe
    assert await retries.call("acme", Flaky(), FAST, breakers) == "ok"
    assert await breakers.state("acme") is CircuitState.CLOSED
