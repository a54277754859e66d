"""Whether a model can be served right now: some route's provider is configured and its
circuit breaker is not open."""

from __future__ import annotations

from services.breakers import CircuitState
from services.catalogue import Catalogue
from services.provider_routing.deps import ProviderDeps


async def model_availability(catalogue: Catalogue, deps: ProviderDeps) -> dict[str, bool]:
    states: dict[str, bool] = {}
    for provider in {route.provider for spec in catalogue.models.values() for route in spec.routes}:
        configured = deps.registry.get(provider) is not None
        states[provider] = (
            configured and await deps.breakers.state(provider) is not CircuitState.OPEN
        )
    return {
        model_id: any(states[route.provider] for route in spec.routes)
        for model_id, spec in catalogue.models.items()
    }
