"""A generation that ends while its provider job runs (cancelled by its owner, failed by the
sweeper's time-out, a workflow's view cancelled with its workflow) stops that job at the
provider at once, in every delivery mode: the change sends `generation.abandon` after
commit, without a delay, instead of leaving it to the next poll (a minute away when
webhooks deliver results, and never when the job finishes first).

The provider is the real Replicate adapter against the fake Replicate API (its documented
wire format, on a real port); the jobs the services send are recorded by the `backend`
fixture and delivered here the way a worker would. The production e2e stack runs without
PUBLIC_BASE_URL (no webhooks), so the webhook mode is tested at this level."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from models.generation import Generation, GenerationKind, GenerationStatus
from models.user import User
from providers.base import ProgressCallback, ProviderRequest, Result, WebhookUpdate
from providers.http import ProviderHTTP
from providers.replicate import ReplicateProvider
from services import credits, generations, jobs, runner, workflows
from services.catalogue import Catalogue, parse_catalogue
from services.generations import NewGeneration
from services.provider_limits import Lease, ProviderLimit
from services.provider_routing.deps import ProviderDeps
from services.sweeper import sweep
from tests.support.fakes.replicate import SIGNING_SECRET, TOKEN, FakeReplicate
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import provider_deps

MODEL = "black-forest-labs/flux-schnell"
TIME_LIMIT = 60
CATALOGUE = parse_catalogue(
    {
        "models": {
            "queued": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "time_limit": TIME_LIMIT,
                "routes": [{"provider": "replicate", "model": MODEL, "timeout": 10}],
            }
        },
        "workflows": {"multi_view": {"cost": 3, "model": "queued"}},
    }
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http_client:
        yield http_client


def deps_for(
    client: httpx.AsyncClient, base_url: str, *, webhooks: bool, max_concurrent: int = 1
) -> ProviderDeps:
    adapter = ReplicateProvider(
        ProviderHTTP("replicate", client), TOKEN, base_url, webhook_secret=SIGNING_SECRET
    )
    return provider_deps(
        adapter,
        limits={"replicate": ProviderLimit(max_concurrent=max_concurrent)},
        webhook_base_url="https://kiln.example" if webhooks else None,
    )


async def deliver_at_once(backend, since: int, deps: ProviderDeps, cat: Catalogue) -> list[str]:
    """Deliver the jobs sent since `since` that leave without a delay, as a worker would
    (delayed ones, such as the next poll, are left for later); their actors, in order."""
    delivered = []
    index = since
    while index < len(backend.sent):
        actor, args, delay = backend.sent[index]
        index += 1
        if delay:
            continue
        delivered.append(actor)
        generation_id = uuid.UUID(args[0])
        if actor == jobs.ABANDON:
            await runner.abandon(generation_id, int(args[1]), cat, deps)
        elif actor == jobs.RUN:
            await runner.run_generation(generation_id, cat, deps, backend.store)
        elif actor == jobs.VIEWS:
            await workflows.start_views(generation_id, int(args[1]), cat, backend.store)
        elif actor == jobs.ADVANCE:
            await workflows.advance(generation_id, int(args[1]))
    return delivered


async def running_job(user, replicate: FakeReplicate, deps: ProviderDeps, backend) -> Generation:
    """A generation of the queued model, its Replicate prediction submitted and running."""
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a lantern", model="queued"), CATALOGUE
    )
    await runner.run_generation(generation.id, CATALOGUE, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert (
        row.status is GenerationStatus.PROCESSING and row.provider_job_id in replicate.predictions
    )
    return row


def cancels(replicate: FakeReplicate, job_id: str | None = None) -> list[str]:
    """The predictions whose cancel endpoint was called, in order."""
    called = [r.path.split("/")[-2] for r in replicate.calls("POST") if r.path.endswith("/cancel")]
    return [c for c in called if job_id is None or c == job_id]


@pytest.mark.parametrize("webhooks", [True, False], ids=["webhooks", "polling"])
async def test_cancel_reaches_the_provider_at_once_and_once(
    make_user, backend, replicate, client, webhooks
):
    deps = deps_for(client, replicate.api_url, webhooks=webhooks)
    user = await make_user()
    generation = await running_job(user, replicate, deps, backend)
    job_id = generation.provider_job_id
    assert job_id is not None
    if webhooks:  # the next poll is only the safety net, a minute away
        [(_, _, poll_delay)] = [
            s for s in backend.sent if s[0] == jobs.POLL and s[1][0] == str(generation.id)
        ]
        assert poll_delay is not None and poll_delay >= runner.WEBHOOK_FALLBACK_POLL * 1000

    mark = len(backend.sent)
    await generations.cancel(user, generation.id)
    assert (jobs.ABANDON, (str(generation.id), "1"), None) in backend.sent[mark:]
    assert await deliver_at_once(backend, mark, deps, CATALOGUE) == [jobs.ABANDON]
    assert cancels(replicate) == [job_id]
    assert replicate.predictions[job_id]["status"] == "canceled"
    assert isinstance(await deps.limiter.acquire("replicate"), Lease)  # its slot is free

    # A redelivered abandon, then the poll that was already on its way: nothing twice.
    await runner.abandon(generation.id, 1, CATALOGUE, deps)
    await runner.poll(generation.id, 1, CATALOGUE, deps, backend.store)
    assert cancels(replicate) == [job_id]
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_a_sweeper_time_out_stops_the_provider_job(make_user, backend, replicate, client):
    deps = deps_for(client, replicate.api_url, webhooks=True)
    user = await make_user()
    generation = await running_job(user, replicate, deps, backend)
    await Generation.filter(id=generation.id).update(
        started_at=datetime.now(UTC) - timedelta(seconds=TIME_LIMIT + 5)
    )
    mark = len(backend.sent)
    await sweep(CATALOGUE, requeue_after=3600)
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "PROVIDER_TIMEOUT")
    assert (jobs.ABANDON, (str(generation.id), "1"), None) in backend.sent[mark:]
    await deliver_at_once(backend, mark, deps, CATALOGUE)
    assert cancels(replicate, generation.provider_job_id) == [generation.provider_job_id]
    assert isinstance(await deps.limiter.acquire("replicate"), Lease)


async def test_cancelling_a_workflow_stops_the_provider_jobs_of_its_views(
    make_user, backend, replicate, client
):
    deps = deps_for(client, replicate.api_url, webhooks=True, max_concurrent=10)
    user = await make_user()
    replicate.outcome.polls = 0  # the front view is drawn at once
    mark = len(backend.sent)
    parent = await generations.create_generation(
        user,
        NewGeneration(
            prompt="a leather backpack", kind=GenerationKind.MULTI_VIEW, width=64, height=64
        ),
        CATALOGUE,
    )
    await deliver_at_once(backend, mark, deps, CATALOGUE)  # its generation.run
    assert (await Generation.get(id=parent.id)).status is GenerationStatus.AWAITING_APPROVAL
    replicate.outcome.polls = 50  # the views run for a long while
    mark = len(backend.sent)
    await workflows.approve(user, parent.id)
    await deliver_at_once(backend, mark, deps, CATALOGUE)  # analysis, then the views start
    views = await Generation.filter(parent_id=parent.id)
    assert len(views) == 4
    assert all(v.status is GenerationStatus.PROCESSING and v.provider_job_id for v in views)

    mark = len(backend.sent)
    await generations.cancel(user, parent.id)
    abandoned = {args[0] for actor, args, _ in backend.sent[mark:] if actor == jobs.ABANDON}
    assert abandoned == {str(v.id) for v in views}
    await deliver_at_once(backend, mark, deps, CATALOGUE)
    assert sorted(cancels(replicate)) == sorted(str(v.provider_job_id) for v in views)
    assert (await credits.get_balance(user.id)).available == 5


async def test_a_generation_without_a_provider_job_sends_no_abandon(
    make_user, backend, replicate, client
):
    deps = deps_for(client, replicate.api_url, webhooks=True)
    user = await make_user()
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a lantern", model="queued"), CATALOGUE
    )
    mark = len(backend.sent)
    await generations.cancel(user, generation.id)  # still QUEUED: nothing was submitted
    assert [s for s in backend.sent[mark:] if s[0] == jobs.ABANDON] == []
    await runner.abandon(generation.id, 1, CATALOGUE, deps)  # a stray message
    assert replicate.requests == []


async def test_a_late_abandon_leaves_the_next_attempts_job_alone(
    make_user, backend, replicate, client
):
    deps = deps_for(client, replicate.api_url, webhooks=True)
    user = await make_user()
    first = await running_job(user, replicate, deps, backend)
    await generations.cancel(user, first.id)
    await runner.abandon(first.id, 1, CATALOGUE, deps)
    await generations.retry(user, first.id)
    await runner.run_generation(first.id, CATALOGUE, deps, backend.store)
    second = await Generation.get(id=first.id)
    assert second.attempts == 2 and second.provider_job_id not in (None, first.provider_job_id)

    await runner.abandon(first.id, 1, CATALOGUE, deps)  # attempt 1's message, delivered again
    assert cancels(replicate) == [first.provider_job_id]
    assert second.status is GenerationStatus.PROCESSING
    await generations.cancel(user, first.id)
    await runner.abandon(first.id, 2, CATALOGUE, deps)
    assert cancels(replicate) == [first.provider_job_id, second.provider_job_id]


class CancelledWhileSubmitting:
    """The Replicate adapter, except that the owner cancels while the prediction is created
    (before Kiln could attach it to the generation)."""

    name = "replicate"

    def __init__(self, inner: ReplicateProvider) -> None:
        self.inner = inner
        self.cancel_as: tuple[User, uuid.UUID] | None = None

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        result = await self.inner.start(request, progress)
        assert self.cancel_as is not None
        await generations.cancel(*self.cancel_as)
        return result

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        return await self.inner.poll(request, job_id)

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        await self.inner.cancel(request, job_id)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        return self.inner.parse_webhook(headers, body)


async def test_a_cancel_during_submission_stops_the_job_and_frees_its_slot(
    make_user, backend, replicate, client
):
    adapter = CancelledWhileSubmitting(
        ReplicateProvider(ProviderHTTP("replicate", client), TOKEN, replicate.api_url)
    )
    deps = provider_deps(adapter, limits={"replicate": ProviderLimit(max_concurrent=1)})
    user = await make_user()
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a lantern", model="queued"), CATALOGUE
    )
    adapter.cancel_as = (user, generation.id)
    await runner.run_generation(generation.id, CATALOGUE, deps, backend.store)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.CANCELED
    [job_id] = replicate.predictions
    assert cancels(replicate) == [job_id]
    assert isinstance(await deps.limiter.acquire("replicate"), Lease)
