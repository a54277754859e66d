from __future__ import annotations

import asyncio

from PIL import Image

from models.error_event import ErrorEvent
from models.generation import Generation, GenerationStatus
from realtime import channels
from services import credits, generations, runner
from services.catalogue import load_catalogue
from services.generations import NewGeneration
from services.runner import run_generation
from tests.support.generations import CATALOGUE, registry
from tests.support.ledger import assert_ledger_matches


async def run_and_watch(backend, generation_id, *, delay: float) -> list[dict]:
    """Run the generation with the local provider; the messages published until COMPLETED."""
    async with backend.hub.subscribe(channels.generation(generation_id)) as mailbox:
        seen: list[dict] = []

        async def watch() -> None:
            async for message in mailbox:
                seen.append(message)
                if message["status"] == "COMPLETED":
                    return

        watcher = asyncio.create_task(watch())
        await run_generation(generation_id, CATALOGUE, registry(delay), backend.store)
        await asyncio.wait_for(watcher, 5)
    return seen


async def test_a_generation_runs_to_completion_with_real_pngs(make_user, backend, monkeypatch):
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", 0.0)  # every report is written
    user = await make_user(credits=5)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="lighthouse", num_outputs=2, width=96, height=64), CATALOGUE
    )
    seen = await run_and_watch(backend, generation.id, delay=0.01)

    row = await Generation.get(id=generation.id)
    assert (row.status, row.provider, row.progress) == (GenerationStatus.COMPLETED, "local", 1.0)
    outputs = await generations.outputs_of(generation.id)
    assert [o.index for o in outputs] == [0, 1]
    for output in outputs:
        assert output.storage_key == f"{user.id}/{generation.id}/{output.index}.png"
        with Image.open(backend.store.path_for(output.storage_key)) as image:
            assert image.size == (96, 64)
    progress = [m["progress"] for m in seen if m["status"] == "PROCESSING"]
    assert len(progress) >= 3 and progress == sorted(progress)
    assert [m["version"] for m in seen] == sorted({m["version"] for m in seen})
    assert (await credits.get_balance(user.id)).available == 3
    await assert_ledger_matches(user.id)


async def test_running_twice_does_nothing_twice(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await asyncio.gather(
        *[run_generation(generation.id, CATALOGUE, registry(), backend.store) for _ in range(3)]
    )
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    version = row.version
    await run_generation(generation.id, CATALOGUE, registry(), backend.store)
    assert (await Generation.get(id=generation.id)).version == version
    assert (await credits.get_balance(user.id)).available == 4
    await assert_ledger_matches(user.id)


async def test_a_failing_provider_fails_refunds_and_records_an_error(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(
        user, NewGeneration(prompt="x", model="local-broken"), CATALOGUE, request_id="req-77"
    )
    await run_generation(generation.id, CATALOGUE, registry(), backend.store)
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "ALL_PROVIDERS_FAILED")
    assert row.error_message and "Traceback" not in row.error_message
    assert (await credits.get_balance(user.id)).available == 5
    event = (
        await ErrorEvent.filter(error_code="ALL_PROVIDERS_FAILED").order_by("-last_seen").first()
    )
    assert event is not None and event.category.value == "GENERATION"
    assert event.last_occurrence and event.last_occurrence["requestId"] == "req-77"
    await assert_ledger_matches(user.id)


async def test_cancel_during_the_run_stops_it_and_stores_nothing(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    runner = asyncio.create_task(
        run_generation(generation.id, CATALOGUE, registry(0.05), backend.store)
    )
    while (await Generation.get(id=generation.id)).status is not GenerationStatus.PROCESSING:
        await asyncio.sleep(0.01)
    await generations.cancel(user, generation.id)
    await asyncio.wait_for(runner, 5)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.CANCELED
    assert await generations.outputs_of(generation.id) == []
    assert not (backend.store.root / str(user.id) / str(generation.id)).exists()
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_a_model_dropped_from_the_catalogue_fails_cleanly(make_user, backend):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    await run_generation(
        generation.id, load_catalogue().__class__({}, {}), registry(), backend.store
    )
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "MODEL_UNAVAILABLE")
    assert (await credits.get_balance(user.id)).available == 5


async def test_progress_reports_are_coalesced(make_user, backend, monkeypatch):
    """Reports closer together than PROGRESS_INTERVAL are dropped: a fast generation is
    published as started and completed, and still ends with progress 1.0."""
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", 3600.0)
    user = await make_user(credits=5)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="quick", num_outputs=2, width=64, height=64), CATALOGUE
    )
    seen = await run_and_watch(backend, generation.id, delay=0.0)

    assert [(m["status"], m["stage"]) for m in seen] == [
        ("PROCESSING", "starting"),
        ("COMPLETED", "completed"),
    ]
    assert [m["version"] for m in seen] == [2, 3]
    assert seen[-1]["progress"] == 1.0 and len(seen[-1]["outputs"]) == 2
    await assert_ledger_matches(user.id)
