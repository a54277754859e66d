"""Creating generations and running them with the built-in provider in tests."""

from __future__ import annotations

from models.generation import Generation
from services import generations, runner
from services.catalogue import Catalogue, load_catalogue, parse_catalogue
from services.generations import NewGeneration
from services.provider_routing.deps import ProviderDeps
from tests.support.providers import provider_deps

# The catalogue Kiln ships with (every model served by the local provider).
DEFAULT_CATALOGUE = load_catalogue()


async def create(user, **fields) -> Generation:
    return await generations.create_generation(
        user, NewGeneration(**{"prompt": "a red fox", **fields}), DEFAULT_CATALOGUE
    )


# Two models of the local provider, one of which always fails.
CATALOGUE = parse_catalogue(
    {
        "models": {
            "local-image": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "default": True,
                "routes": [{"provider": "local", "model": "pattern-v1"}],
            },
            "local-broken": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "routes": [
                    {
                        "provider": "local",
                        "model": "pattern-v1",
                        "params": {"fail": "PROVIDER_ERROR"},
                    }
                ],
            },
        }
    }
)


def registry(delay: float = 0.0) -> ProviderDeps:
    """The built-in provider only (named for what the tests need from it)."""
    return provider_deps(local_delay=delay)


def routed_catalogue(
    *providers: str, image_input: bool = False, expected_seconds: float | None = None
) -> Catalogue:
    """One default IMAGE model "m" costing 1, routed to each provider in turn (its model
    named "<provider>-model"): the catalogue routing tests vary only the routes of."""
    extra = {} if expected_seconds is None else {"expected_seconds": expected_seconds}
    return parse_catalogue(
        {
            "models": {
                "m": {
                    "kind": "IMAGE",
                    "cost_per_output": 1,
                    "default": True,
                    "image_input": image_input,
                    "routes": [
                        {"provider": name, "model": f"{name}-model", **extra} for name in providers
                    ],
                }
            }
        }
    )


async def run_in_process(user, deps: ProviderDeps, store) -> Generation:
    """A generation of CATALOGUE's default model for `user`, run to its end in this process
    (as a worker would); its row after."""
    generation = await generations.create_generation(user, NewGeneration(prompt="fox"), CATALOGUE)
    await runner.run_generation(generation.id, CATALOGUE, deps, store)
    return await Generation.get(id=generation.id)
