"""Replicate throttles with a 429 whose body says how long to wait (no Retry-After header).
The runner's retries honour that wait, on every Replicate call, within the retry budget
(PROVIDER_RETRY_MAX_WAIT_SECONDS; here FAST_RETRIES: 3 attempts, at most 2 s of waiting):
a short throttle is waited out instead of being hit three times in a few milliseconds, and a
long one is not hit again at all. The fake Replicate answers as documented while throttled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from models.generation import Generation, GenerationStatus
from providers.http import ProviderHTTP
from providers.replicate import ReplicateProvider
from services import generations, runner
from services.catalogue import parse_catalogue
from services.generations import NewGeneration
from services.provider_routing.deps import ProviderDeps
from tests.support.fakes.replicate import TOKEN, FakeReplicate
from tests.support.providers import FAST_RETRIES, provider_deps

MODEL = "black-forest-labs/flux-schnell"
CREATE_PATH = f"/v1/models/{MODEL}/predictions"
CATALOGUE = parse_catalogue(
    {
        "models": {
            "queued": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "routes": [{"provider": "replicate", "model": MODEL, "timeout": 10}],
            }
        }
    }
)


@pytest.fixture
async def deps(replicate: FakeReplicate) -> AsyncIterator[ProviderDeps]:
    async with httpx.AsyncClient() as client:
        adapter = ReplicateProvider(ProviderHTTP("replicate", client), TOKEN, replicate.api_url)
        yield provider_deps(adapter)


async def submit(user, deps: ProviderDeps, backend) -> Generation:
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a lantern", model="queued"), CATALOGUE
    )
    await runner.run_generation(generation.id, CATALOGUE, deps, backend.store)
    return await Generation.get(id=generation.id)


async def test_a_short_throttle_is_waited_out_and_the_job_goes_on(
    make_user, backend, replicate, deps
):
    replicate.throttle(1.0)  # within the budget
    generation = await submit(await make_user(), deps, backend)
    assert generation.status is GenerationStatus.PROCESSING, generation.error_message
    assert generation.provider_job_id in replicate.predictions
    assert len(replicate.calls("POST", CREATE_PATH)) == 2  # throttled once, then accepted


async def test_a_throttle_longer_than_the_budget_is_not_hit_again(
    make_user, backend, replicate, deps
):
    replicate.throttle(30.0)
    assert FAST_RETRIES.max_total_wait < 30.0
    generation = await submit(await make_user(), deps, backend)
    # The retry policy is unchanged: past its budget the route has failed (here, the only one).
    assert (generation.status, generation.error_code) == (
        GenerationStatus.FAILED,
        "ALL_PROVIDERS_FAILED",
    )
    assert len(replicate.calls("POST", CREATE_PATH)) == 1


async def test_a_throttled_cancel_is_sent_again_after_the_wait(make_user, backend, replicate, deps):
    user = await make_user()
    generation = await submit(user, deps, backend)
    job_id = generation.provider_job_id
    assert job_id is not None
    await generations.cancel(user, generation.id)
    replicate.throttle(1.0)
    await runner.abandon(generation.id, 1, CATALOGUE, deps)
    assert len(replicate.calls("POST", f"/v1/predictions/{job_id}/cancel")) == 2
    assert replicate.predictions[job_id]["status"] == "canceled"
