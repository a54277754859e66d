"""A user's width x height reaches an OpenAI-compatible model as a size it accepts: the
route's `sizes` from the catalogue, else what the adapter knows of OpenAI's own models. The
fake OpenAI answers 400 for a size its model does not list, as OpenAI does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from models.generation import Generation, GenerationStatus
from providers.http import ProviderHTTP
from providers.openai import OpenAIProvider
from services import generations, runner
from services.catalogue import parse_catalogue
from services.generations import NewGeneration
from services.provider_routing.deps import ProviderDeps
from tests.support.fakes import served
from tests.support.fakes.openai import API_KEY, FakeOpenAI
from tests.support.providers import provider_deps

CATALOGUE = parse_catalogue(
    {
        "models": {
            "dalle": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "routes": [{"provider": "openai", "model": "dall-e-3"}],
            },
            "compatible": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "routes": [
                    {"provider": "openai", "model": "my-sdxl", "sizes": ["512x512", "768x512"]}
                ],
            },
        }
    }
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with served(FakeOpenAI()) as server:
        yield server


@pytest.fixture
async def deps(fake: FakeOpenAI) -> AsyncIterator[ProviderDeps]:
    fake.reset()
    async with httpx.AsyncClient() as client:
        adapter = OpenAIProvider(ProviderHTTP("openai", client), API_KEY, f"{fake.base_url}/v1")
        yield provider_deps(adapter)


@pytest.mark.parametrize(
    ("model", "width", "height", "sent"),
    [("dalle", 768, 512, "1792x1024"), ("compatible", 700, 480, "768x512")],
)
async def test_the_size_sent_is_one_the_model_accepts(
    make_user, backend, fake, deps, model, width, height, sent
):
    generation = await generations.create_generation(
        await make_user(),
        NewGeneration(prompt="a lantern", model=model, width=width, height=height),
        CATALOGUE,
    )
    await runner.run_generation(generation.id, CATALOGUE, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED, row.error_message
    assert [r.json["size"] for r in fake.requests] == [sent]
    [output] = await generations.outputs_of(generation.id)
    assert f"{output.width}x{output.height}" == sent
