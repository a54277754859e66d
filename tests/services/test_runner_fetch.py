"""How a generation ends when a URL it must fetch is slow or unreachable: an input image
fails the generation as INPUT_IMAGE_UNAVAILABLE (credits released, one WARNING event, not an
INTERNAL crash); a provider's output becomes OUTPUT_UNAVAILABLE and the next route serves. A
dripping server holds the worker only until the fetch deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator, Mapping

import pytest

from models.error_event import ErrorEvent, Severity
from models.generation import Generation, GenerationStatus
from providers.base import (
    Finished,
    ProgressCallback,
    ProviderOutput,
    ProviderRequest,
    Result,
    WebhookUpdate,
)
from runtime import build_provider_deps
from services import credits, generations, runner
from services.fetch import FetchTiming
from services.generations import NewGeneration
from services.provider_routing.deps import ProviderDeps
from settings import Settings
from tests.support.fake_server import Drip, free_port, serve
from tests.support.generations import routed_catalogue
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import provider_deps

LOCAL = frozenset({"127.0.0.1"})
# Far above every deadline set here: only a fetch that never ends reaches it.
NEVER = 20
AT_THE_DEADLINE = FetchTiming(deadline=0.5, min_rate=0)
BELOW_THE_RATE = FetchTiming(deadline=60, min_rate=1000, grace=0.2)


@pytest.fixture(scope="module")
def dripping() -> Iterator[str]:
    """A PNG header, then one byte every 50 ms for as long as the client listens."""
    with serve(Drip(0.05)) as url:
        yield url


def deps_with(timing: FetchTiming, *extra: Remote) -> ProviderDeps:
    return dataclasses.replace(provider_deps(*extra), fetch_timing=timing)


async def image_to_image(user, url: str, cat) -> Generation:
    return await generations.create_generation(
        user, NewGeneration(prompt="p", input_image_url=url), cat, fetch_allow_hosts=LOCAL
    )


async def events_of(generation_id: uuid.UUID, *, at_least: int) -> list[ErrorEvent]:
    """The error event groups whose latest occurrence is this generation's (recording may
    finish just after the generation ends)."""
    for _ in range(200):
        found = [
            event
            for event in await ErrorEvent.all()
            if ((event.last_occurrence or {}).get("metadata") or {}).get("generationId")
            == str(generation_id)
        ]
        if len(found) >= at_least:
            return found
        await asyncio.sleep(0.02)
    return found


async def assert_failed_for_its_input_image(user, generation: Generation, count_before: int):
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "INPUT_IMAGE_UNAVAILABLE")
    assert row.error_message == "We could not fetch your input image. Your credits were refunded."
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)
    [event] = await events_of(generation.id, at_least=1)
    assert (event.error_code, event.severity) == ("INPUT_IMAGE_UNAVAILABLE", Severity.WARNING)
    assert event.user_facing and event.count == count_before + 1


async def input_image_events() -> int:
    event = await ErrorEvent.filter(error_code="INPUT_IMAGE_UNAVAILABLE").first()
    return event.count if event else 0


@pytest.mark.parametrize("timing", [AT_THE_DEADLINE, BELOW_THE_RATE], ids=["deadline", "rate"])
async def test_a_dripping_input_image_fails_the_generation_and_releases_its_credits(
    make_user, backend, dripping, timing
):
    cat = routed_catalogue("local", image_input=True)
    user = await make_user(credits=5)
    generation = await image_to_image(user, f"{dripping}/cat.png", cat)
    before = await input_image_events()
    await asyncio.wait_for(
        runner.run_generation(generation.id, cat, deps_with(timing), backend.store), NEVER
    )
    await assert_failed_for_its_input_image(user, generation, before)


async def test_an_unreachable_input_image_is_a_warning_not_a_crash(make_user, backend):
    cat = routed_catalogue("local", image_input=True)
    user = await make_user(credits=5)
    generation = await image_to_image(user, f"http://127.0.0.1:{free_port()}/cat.png", cat)
    before = await input_image_events()
    await runner.run_generation(generation.id, cat, provider_deps(), backend.store)
    await assert_failed_for_its_input_image(user, generation, before)


async def test_a_worker_is_freed_by_the_deadline(make_user, backend, dripping):
    """One worker, taking jobs in turn: two generations whose input image drips, then an
    unrelated one. The dripping ones end at their deadline and the unrelated one completes
    (before, each dripping fetch held the worker for as long as the server kept dripping)."""
    cat = routed_catalogue("local", image_input=True)
    user = await make_user(credits=5)
    dripping_ones = [await image_to_image(user, f"{dripping}/{i}.png", cat) for i in range(2)]
    unrelated = await generations.create_generation(user, NewGeneration(prompt="p"), cat)
    deps = deps_with(AT_THE_DEADLINE)

    async def worker() -> None:
        for generation in [*dripping_ones, unrelated]:
            await runner.run_generation(generation.id, cat, deps, backend.store)

    await asyncio.wait_for(worker(), NEVER)
    assert (await Generation.get(id=unrelated.id)).status is GenerationStatus.COMPLETED
    for generation in dripping_ones:
        row = await Generation.get(id=generation.id)
        assert (row.status, row.error_code) == (GenerationStatus.FAILED, "INPUT_IMAGE_UNAVAILABLE")
    assert (await credits.get_balance(user.id)).available == 4
    await assert_ledger_matches(user.id)


class Remote:
    """A provider that finishes at once with one output to download from `url`."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.started = 0

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        self.started += 1
        return Finished([ProviderOutput(url=self.url)])

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        raise AssertionError("never queued")

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        raise AssertionError("no webhooks")


@pytest.mark.parametrize("timing", [AT_THE_DEADLINE, BELOW_THE_RATE], ids=["deadline", "rate"])
async def test_a_dripping_output_is_unavailable_and_the_next_route_serves(
    make_user, backend, dripping, timing
):
    remote = Remote("remote", f"{dripping}/out.png")
    cat = routed_catalogue("remote", "local")
    user = await make_user(credits=5)
    generation = await generations.create_generation(user, NewGeneration(prompt="p"), cat)
    await asyncio.wait_for(
        runner.run_generation(generation.id, cat, deps_with(timing, remote), backend.store),
        NEVER,
    )
    row = await Generation.get(id=generation.id)
    assert (row.status, row.provider, remote.started) == (GenerationStatus.COMPLETED, "local", 1)
    assert (await credits.get_balance(user.id)).available == 4
    await assert_ledger_matches(user.id)
    internal = await ErrorEvent.filter(error_code="INTERNAL_ERROR")
    assert not [
        e
        for e in internal
        if ((e.last_occurrence or {}).get("metadata") or {}).get("generationId")
        == str(generation.id)
    ]


async def test_the_fetch_settings_reach_the_runner():
    deps = build_provider_deps(
        Settings(
            fetch_deadline_seconds=12,
            fetch_min_bytes_per_second=2048,
            fetch_rate_grace_seconds=1.5,
        ),
        None,
    )
    try:
        assert deps.fetch_timing == FetchTiming(deadline=12, min_rate=2048, grace=1.5)
    finally:
        await deps.http.aclose()
