"""The provider_job column read through ProviderJob: the same JSON as before, typed."""

from __future__ import annotations

from models.generation import Generation
from services import generations
from services.generations import ProviderJob
from services.generations import pages as generation_pages
from tests.support.generations import create

# What the runner wrote before this shape existed, key for key.
WRITTEN_BEFORE = {
    "route": 1,
    "provider": "replicate",
    "job": "p-123",
    "lease": "slot-9",
    "model": "black-forest-labs/flux-schnell",
    "at": 1764770000.25,
    "expected": 4.0,
}


def test_the_column_round_trips_under_its_keys():
    job = ProviderJob.from_json(WRITTEN_BEFORE)
    assert job == ProviderJob(
        job_id="p-123",
        provider="replicate",
        route=1,
        limit_token="slot-9",
        model="black-forest-labs/flux-schnell",
        accepted_at=1764770000.25,
        expected_seconds=4.0,
    )
    assert job.to_json() == WRITTEN_BEFORE


def test_a_row_from_an_older_version_reads_with_the_later_keys_unset():
    job = ProviderJob.from_json({"job": "j-1", "provider": "replicate", "route": 0})
    assert (job.job_id, job.provider, job.route) == ("j-1", "replicate", 0)
    assert (job.limit_token, job.model, job.accepted_at, job.expected_seconds) == (
        "",
        None,
        None,
        None,
    )
    assert job.to_json() == {"job": "j-1", "provider": "replicate", "route": 0}
    # Not a time: read as unset rather than trusted.
    odd = ProviderJob.from_json({**WRITTEN_BEFORE, "at": "soon", "expected": True})
    assert (odd.accepted_at, odd.expected_seconds) == (None, None)


async def test_an_attached_job_is_stored_as_json_and_named_by_its_id(make_user, backend):
    user = await make_user(credits=5)
    generation = await create(user)
    assert ProviderJob.of(generation) is None
    assert await generations.start(generation.id) is not None
    job = ProviderJob.from_json(WRITTEN_BEFORE)
    attached = await generations.attach_job(generation.id, 1, job, "queued at the provider")
    assert attached is not None
    row = await Generation.get(id=generation.id)
    assert row.provider_job == WRITTEN_BEFORE and row.provider_job_id == "p-123"
    assert ProviderJob.of(row) == job
    page = await generation_pages.list_generations(user, first=5, after=None)
    assert [g.provider_job for g in page.items] == [job]
    await generations.cancel(user, generation.id)
