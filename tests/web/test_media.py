"""/media serves stored outputs as what they are: files that never change. A URL, once handed
out, always serves the same bytes (a redrawn front view of a workflow gets a new key), so
browsers and CDNs may keep them for good and revalidate with the ETag."""

from __future__ import annotations

import uuid

from models.generation import GenerationKind, GenerationStatus
from services import generations, jobs, runner, workflows
from services.catalogue import load_catalogue
from services.generations import NewGeneration
from tests.support.app import app_client
from tests.support.generations import registry

IMMUTABLE = "public, max-age=31536000, immutable"
CATALOGUE = load_catalogue()


async def test_an_output_is_cached_for_good_and_revalidated_by_its_etag(backend, monkeypatch):
    key = f"{uuid.uuid4()}/{uuid.uuid4()}/0.png"
    await backend.store.put(key, b"\x89PNG not really", "image/png")
    async with app_client(backend, monkeypatch) as client:
        first = await client.get(f"/media/{key}")
        assert first.status_code == 200 and first.content == b"\x89PNG not really"
        assert first.headers["cache-control"] == IMMUTABLE
        etag = first.headers["etag"]
        again = await client.get(f"/media/{key}", headers={"if-none-match": etag})
        assert again.status_code == 304 and not again.content
        assert (again.headers["etag"], again.headers["cache-control"]) == (etag, IMMUTABLE)
        missing = await client.get(f"/media/{uuid.uuid4()}/{uuid.uuid4()}/0.png")
        assert missing.status_code == 404
        assert missing.headers.get("cache-control") != IMMUTABLE  # it may exist later


async def _run_queued(backend, generation_id: uuid.UUID) -> None:
    """Deliver the generation's pending `generation.run` jobs, as a worker would."""
    while backend.sent:
        actor, args, _ = backend.sent.pop(0)
        if actor == jobs.RUN and args[0] == str(generation_id):
            await runner.run_generation(generation_id, CATALOGUE, registry(), backend.store)


async def test_a_redrawn_front_view_gets_a_new_url_and_the_old_one_keeps_its_bytes(
    backend, make_user, monkeypatch
):
    user = await make_user(credits=10)
    backend.sent.clear()
    workflow = await generations.create_generation(
        user,
        NewGeneration(
            prompt="a leather backpack", kind=GenerationKind.MULTI_VIEW, width=64, height=64
        ),
        CATALOGUE,
    )
    await _run_queued(backend, workflow.id)
    [first] = await generations.outputs_of(workflow.id)
    first_bytes = await backend.store.get(first.storage_key)

    await workflows.request_changes(user, workflow.id, "make it green", CATALOGUE)
    await _run_queued(backend, workflow.id)
    redrawn = await generations.get_visible(user, workflow.id)
    assert redrawn.status is GenerationStatus.AWAITING_APPROVAL
    [second] = await generations.outputs_of(workflow.id)
    assert second.index == 0 and second.storage_key != first.storage_key
    async with app_client(backend, monkeypatch) as client:
        old = await client.get(f"/media/{first.storage_key}")
        new = await client.get(f"/media/{second.storage_key}")
    assert old.status_code == 200 and old.content == first_bytes
    assert new.status_code == 200 and new.content != first_bytes
    await generations.cancel(user, workflow.id)  # releases its hold
