"""Failover over a model's routes: which provider serves a generation.

The routes are tried in the catalogue's order from `first`: a provider that is not
configured or whose circuit breaker is open is skipped; a provider at its rate limit makes
the work wait for it (`Full`: sent again later, not failed, without using a retry); a route
whose call fails after its retries hands over to the next one; a content rejection ends it
(`Rejected`: another provider would not be asked the same thing). What is done on a route
is the caller's (`RouteWork`); this module only decides which route, and holds the
provider's rate-limit slot (`Lease`) around it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from providers.base import CONTENT_REJECTED, Provider, ProviderError
from services.catalogue import Catalogue, Route
from services.provider_limits import Lease, Wait
from services.provider_routing.deps import ProviderDeps

log = logging.getLogger(__name__)


class RouteWork(Protocol):
    """The work done on route `index` (its adapter, with a slot of its provider). It
    releases the lease itself once the slot is no longer needed, or hands it on (to a queued
    provider job that keeps it); on an exception the lease is released here. A ProviderError
    fails this route over to the next one."""

    async def __call__(self, index: int, route: Route, adapter: Provider, lease: Lease) -> None: ...


@dataclass(frozen=True)
class Served:
    """A route took the work (done, or queued at the provider)."""

    index: int


@dataclass(frozen=True)
class Full:
    """Route `index`'s provider is at its limit: try it again after `wait`."""

    index: int
    route: Route
    wait: Wait


@dataclass(frozen=True)
class Rejected:
    """The provider declined the request under its content policy."""

    error: ProviderError


@dataclass(frozen=True)
class Exhausted:
    """No route served; the last route's error, if any was tried."""

    last_error: ProviderError | None


Outcome = Served | Full | Rejected | Exhausted


async def serve(
    routes: Sequence[Route], first: int, deps: ProviderDeps, work: RouteWork, *, label: str = ""
) -> Outcome:
    """Try `work` on each route from `first` until one serves. `label` names the work in
    the log lines of failed routes."""
    last_error: ProviderError | None = None
    for index in range(first, len(routes)):
        route = routes[index]
        adapter = deps.registry.get(route.provider)
        if adapter is None:
            last_error = ProviderError(
                "PROVIDER_UNAVAILABLE", f"{route.provider} is not configured."
            )
            continue
        if not await deps.breakers.allow(route.provider):
            last_error = ProviderError("PROVIDER_UNAVAILABLE", f"{route.provider} is down.")
            continue
        lease = await deps.limiter.acquire(route.provider)
        if isinstance(lease, Wait):
            return Full(index, route, lease)
        try:
            await work(index, route, adapter, lease)
            return Served(index)
        except ProviderError as error:
            await deps.limiter.release(lease)
            if error.code == CONTENT_REJECTED:
                return Rejected(error)
            log.warning(
                "route %s/%s failed for %s: %s", route.provider, route.model, label, error.code
            )
            last_error = error
        except BaseException:
            await deps.limiter.release(lease)
            raise
    return Exhausted(last_error)


def route_at(catalogue: Catalogue, model: str, index: int) -> Route:
    """Route `index` of `model` (a queued job's route, found again when its result comes).
    Raises MODEL_UNAVAILABLE when the catalogue no longer has it."""
    spec = catalogue.models.get(model)
    if spec is None or index >= len(spec.routes):
        raise ProviderError("MODEL_UNAVAILABLE", "This model's routes changed.", retryable=False)
    return spec.routes[index]
