"""failover.serve on its own: which route gets the work, and that every rate-limit slot
taken for a route that did not keep it is given back."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from providers.base import Provider, ProviderError
from providers.local import LocalProvider
from services.breakers import BreakerPolicy
from services.catalogue import Route
from services.provider_limits import Lease, ProviderLimit
from services.provider_routing import failover
from tests.support.providers import provider_deps


def named(name: str) -> LocalProvider:
    provider = LocalProvider()
    provider.name = name
    return provider


@dataclass
class Work:
    """Fails on the providers in `failing` with their error, serves on the others; keeps
    the lease it is given when `keep` (as a queued provider job does)."""

    failing: dict[str, ProviderError] = field(default_factory=dict)
    keep: bool = False
    tried: list[str] = field(default_factory=list)

    async def __call__(self, index: int, route: Route, adapter: Provider, lease: Lease) -> None:
        self.tried.append(route.provider)
        if route.provider in self.failing:
            raise self.failing[route.provider]


ROUTES = [Route("alpha", "m"), Route("beta", "m"), Route("gamma", "m")]
LIMITED = {name: ProviderLimit(max_concurrent=1) for name in ("alpha", "beta", "gamma")}


async def test_the_first_route_that_serves_has_the_work() -> None:
    deps = provider_deps(named("alpha"), named("beta"), named("gamma"))
    work = Work(failing={"alpha": ProviderError("PROVIDER_UNAVAILABLE", "500")})
    assert await failover.serve(ROUTES, 0, deps, work) == failover.Served(1)
    assert work.tried == ["alpha", "beta"]


async def test_starts_at_the_route_it_is_given() -> None:
    deps = provider_deps(named("alpha"), named("beta"), named("gamma"))
    work = Work()
    assert await failover.serve(ROUTES, 2, deps, work) == failover.Served(2)
    assert work.tried == ["gamma"]


async def test_unconfigured_and_broken_providers_are_skipped() -> None:
    deps = provider_deps(
        named("beta"), named("gamma"), breaker=BreakerPolicy(min_calls=1, failure_threshold=1)
    )
    await deps.breakers.record("beta", ok=False)
    work = Work()
    assert await failover.serve(ROUTES, 0, deps, work) == failover.Served(2)
    assert work.tried == ["gamma"]


async def test_every_route_failing_reports_the_last_error() -> None:
    deps = provider_deps(named("alpha"), named("beta"), named("gamma"), limits=LIMITED)
    last = ProviderError("PROVIDER_TIMEOUT", "slow")
    work = Work(
        failing={
            "alpha": ProviderError("PROVIDER_UNAVAILABLE", "500"),
            "beta": ProviderError("PROVIDER_UNAVAILABLE", "500"),
            "gamma": last,
        }
    )
    assert await failover.serve(ROUTES, 0, deps, work) == failover.Exhausted(last)
    # Each failed route gave its slot back: all three can be taken again.
    for name in ("alpha", "beta", "gamma"):
        assert isinstance(await deps.limiter.acquire(name), Lease)


async def test_no_configured_route_is_exhausted_with_why() -> None:
    outcome = await failover.serve(ROUTES, 0, provider_deps(), Work())
    assert isinstance(outcome, failover.Exhausted)
    assert outcome.last_error is not None and "gamma" in outcome.last_error.message


async def test_a_content_rejection_ends_the_failover() -> None:
    deps = provider_deps(named("alpha"), named("beta"), limits=LIMITED)
    rejected = ProviderError("CONTENT_REJECTED", "no", retryable=False)
    work = Work(failing={"alpha": rejected})
    assert await failover.serve(ROUTES, 0, deps, work) == failover.Rejected(rejected)
    assert work.tried == ["alpha"]
    assert isinstance(await deps.limiter.acquire("alpha"), Lease)


async def test_a_full_provider_makes_the_work_wait_for_its_route() -> None:
    deps = provider_deps(named("alpha"), named("beta"), limits=LIMITED)
    held = await deps.limiter.acquire("alpha")
    assert isinstance(held, Lease)
    work = Work()
    outcome = await failover.serve(ROUTES, 0, deps, work)
    assert isinstance(outcome, failover.Full)
    assert (outcome.index, outcome.route) == (0, ROUTES[0])
    assert work.tried == []


async def test_a_crash_gives_the_slot_back() -> None:
    deps = provider_deps(named("alpha"), limits=LIMITED)

    async def crash(index: int, route: Route, adapter: Provider, lease: Lease) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await failover.serve(ROUTES, 0, deps, crash)
    assert isinstance(await deps.limiter.acquire("alpha"), Lease)
