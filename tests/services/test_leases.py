"""A generation whose worker died is taken over: the running worker holds a lease on its
step; once the lease lapses the sweeper sends the step again and the worker that gets it
resumes from what was saved (a submitted provider job is polled, never submitted twice).

A worker's death is the state it leaves behind: the row PROCESSING under its lease, and
nothing more happening. Time is moved by writing the lease's expiry into the past, never by
waiting."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from models.generation import Generation, GenerationKind, GenerationStatus, WorkflowPhase
from providers.base import Finished, ProviderRequest
from providers.http import ProviderHTTP
from providers.replicate import ReplicateProvider
from services import generations, jobs, runner
from services.catalogue import parse_catalogue
from services.generations import NewGeneration, leases
from services.provider_limits import ProviderLimit
from services.provider_routing.deps import ProviderDeps
from services.sweeper import sweep
from storage import output_key
from tests.support.fake_server import serve
from tests.support.fakes.replicate import FakeReplicate
from tests.support.generations import CATALOGUE, DEFAULT_CATALOGUE, registry
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import provider_deps

TOKEN = "r8_lease_test_token"
MODEL = "black-forest-labs/flux-schnell"
QUEUED_CATALOGUE = parse_catalogue(
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


async def lapse(generation_id: uuid.UUID) -> None:
    """The worker holding the step died a lease ago: its lease is in the past."""
    await Generation.filter(id=generation_id).update(lease_expires_ms=leases.now_ms() - 1)


def sent_since(backend, mark: int, generation_id: uuid.UUID) -> list[tuple[str, tuple[str, ...]]]:
    return [(a, args) for a, args, _ in backend.sent[mark:] if args[0] == str(generation_id)]


async def started_and_abandoned(make_user) -> Generation:
    """A generation a worker started and then died on (nothing after `start`)."""
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
    started = await generations.start(generation.id)
    assert started is not None and started.lease_expires_ms is not None
    return started


async def test_a_redelivered_run_takes_over_a_step_whose_lease_lapsed(make_user, backend):
    generation = await started_and_abandoned(make_user)
    await lapse(generation.id)
    # Dramatiq hands the dead worker's message to another worker: it is not a no-op.
    await runner.run_generation(generation.id, CATALOGUE, registry(), backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    assert len(await generations.outputs_of(generation.id)) == 1
    await assert_ledger_matches(generation.user_id)


async def test_a_step_under_a_live_lease_is_left_to_its_worker(make_user, backend):
    generation = await started_and_abandoned(make_user)
    await runner.run_generation(generation.id, CATALOGUE, registry(), backend.store)
    row = await Generation.get(id=generation.id)
    assert (row.status, row.stage, row.version) == (
        GenerationStatus.PROCESSING,
        "starting",
        generation.version,
    )


async def test_the_sweeper_sends_a_lapsed_step_once_and_its_message_takes_it_over(
    make_user, backend
):
    generation = await started_and_abandoned(make_user)
    await lapse(generation.id)
    mark = len(backend.sent)
    assert (await sweep(CATALOGUE, requeue_after=60))["resumed"] >= 1
    await sweep(CATALOGUE, requeue_after=60)  # the re-send is not repeated while it waits
    [(actor, args)] = sent_since(backend, mark, generation.id)
    assert actor == jobs.RUN and leases.token_of(args[1]) is not None

    # A late copy of the dead worker's message finds the step promised to the re-send.
    await runner.run_generation(generation.id, CATALOGUE, registry(), backend.store)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.PROCESSING
    # The re-send, with its token, takes it over before the lease it was given lapses.
    token = leases.token_of(args[1])
    await runner.run_generation(generation.id, CATALOGUE, registry(), backend.store, token)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED
    await assert_ledger_matches(generation.user_id)


async def test_a_renewed_lease_stays_with_its_worker_until_another_takes_over(make_user, backend):
    generation = await started_and_abandoned(make_user)
    held = leases.held(generation)
    assert held is not None
    before = held.expires_ms
    assert await held.renew() and held.expires_ms >= before
    await lapse(generation.id)  # the worker stalled past its lease...
    row = await generations.get_row(generation.id)
    assert row is not None
    assert await leases.take(row, None, step=jobs.RUN) is not None  # ...and was taken over
    assert not await held.renew()  # its late renewal does not take the step back
    assert held.lost


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeReplicate, str]]:
    fake = FakeReplicate(TOKEN)
    with serve(fake.app) as url:
        yield fake, f"{url}/v1"


@pytest.fixture
async def deps(fake_server: tuple[FakeReplicate, str]) -> AsyncIterator[ProviderDeps]:
    fake_server[0].reset()
    async with httpx.AsyncClient() as client:
        adapter = ReplicateProvider(ProviderHTTP("replicate", client), TOKEN, fake_server[1])
        yield provider_deps(adapter, limits={"replicate": ProviderLimit(max_concurrent=5)})


def submissions(fake: FakeReplicate) -> int:
    return len([r for r in fake.calls("POST") if r.path.endswith("/predictions")])


async def submitted(make_user, deps: ProviderDeps, backend, *, num_outputs: int = 1) -> Generation:
    """A generation whose prediction was submitted by a worker that then died."""
    user = await make_user()
    new = NewGeneration(prompt="a lantern", model="queued", num_outputs=num_outputs)
    generation = await generations.create_generation(user, new, QUEUED_CATALOGUE)
    await runner.run_generation(generation.id, QUEUED_CATALOGUE, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.PROCESSING and row.provider_job_id
    return row


async def deliver_polls(backend, mark: int, generation: Generation, deps: ProviderDeps) -> None:
    """Deliver the polls sent for `generation` since `mark` (and those they send), in order,
    as a worker would once each came due."""
    index = mark
    while index < len(backend.sent):
        actor, args, _ = backend.sent[index]
        index += 1
        if actor == jobs.POLL and args[0] == str(generation.id):
            await runner.poll(
                generation.id,
                int(args[1]),
                QUEUED_CATALOGUE,
                deps,
                backend.store,
                pending_at=float(args[2]) if args[2] else None,
                token=leases.token_of(args[3]) if len(args) > 3 else None,
            )


async def test_a_submitted_provider_job_is_polled_after_a_takeover_not_submitted_again(
    make_user, backend, deps, fake_server
):
    fake = fake_server[0]
    generation = await submitted(make_user, deps, backend)
    assert submissions(fake) == 1
    await lapse(generation.id)  # its poll message was lost with the worker
    mark = len(backend.sent)
    await sweep(QUEUED_CATALOGUE, requeue_after=60)
    [(actor, _)] = sent_since(backend, mark, generation.id)
    assert actor == jobs.POLL
    await deliver_polls(backend, mark, generation, deps)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED
    assert submissions(fake) == 1
    await assert_ledger_matches(generation.user_id)


async def test_a_result_claimed_by_a_worker_that_died_is_claimed_again(
    make_user, backend, deps, fake_server
):
    fake = fake_server[0]
    generation = await submitted(make_user, deps, backend)
    assert generation.provider_job_id is not None
    # The worker took the finished job's result, then died while downloading it.
    assert await generations.claim_job(generation.id, generation.provider_job_id)
    await lapse(generation.id)
    mark = len(backend.sent)
    await runner.run_generation(generation.id, QUEUED_CATALOGUE, deps, backend.store)
    await deliver_polls(backend, mark, generation, deps)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED
    assert submissions(fake) == 1
    await assert_ledger_matches(generation.user_id)


async def test_a_second_poll_chain_stops_at_its_first_poll(make_user, backend, deps, fake_server):
    fake = fake_server[0]
    generation = await submitted(make_user, deps, backend)
    polls = [args for actor, args, _ in backend.sent if actor == jobs.POLL]
    token = leases.token_of(polls[-1][3])
    assert token is not None
    reads = len(fake.calls("GET"))
    # A poll sent with an earlier lease of the step (a redelivered poll the chain has moved
    # past, a re-send that arrived late) while the chain's own poll is on its way: it asks
    # the provider nothing and sends nothing.
    mark = len(backend.sent)
    stale = token - 1
    await runner.poll(generation.id, 1, QUEUED_CATALOGUE, deps, backend.store, token=stale)
    assert len(fake.calls("GET")) == reads and backend.sent[mark:] == []
    # The chain's own poll goes on.
    await runner.poll(generation.id, 1, QUEUED_CATALOGUE, deps, backend.store, token=token)
    assert len(fake.calls("GET")) == reads + 1


async def test_a_workflow_waiting_on_its_views_is_not_run_again(make_user, backend):
    """An approved workflow is PROCESSING while its views run (each under a lease of its
    own): its front view's old lease lapsing must not draw the front view again."""
    user = await make_user()
    parent = await generations.create_generation(
        user,
        NewGeneration(prompt="a backpack", kind=GenerationKind.MULTI_VIEW),
        DEFAULT_CATALOGUE,
    )
    assert await generations.start(parent.id) is not None
    await Generation.filter(id=parent.id).update(phase=WorkflowPhase.ANALYSIS)
    await lapse(parent.id)
    mark = len(backend.sent)
    await sweep(DEFAULT_CATALOGUE, requeue_after=60)
    assert [a for a, _ in sent_since(backend, mark, parent.id)] == [jobs.VIEWS]  # its nudge
    await runner.run_generation(parent.id, DEFAULT_CATALOGUE, registry(), backend.store)
    row = await Generation.get(id=parent.id)
    assert (row.status, row.phase) == (GenerationStatus.PROCESSING, WorkflowPhase.ANALYSIS)
    await generations.cancel(user, parent.id)


async def test_outputs_stored_before_a_worker_died_are_not_fetched_again(
    make_user, backend, deps, fake_server
):
    downloads: list[str] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path.startswith("/files/"):
            downloads.append(request.url.path.rsplit("/", 1)[-1])

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
        deps = dataclasses.replace(deps, http=http)
        generation = await submitted(make_user, deps, backend, num_outputs=2)
        job_id = generation.provider_job_id
        assert job_id is not None
        # What the worker did before it died: its polls found the prediction done, it
        # claimed the result, downloaded and stored output 0 (under the output's key) ...
        adapter = deps.registry.get("replicate")
        assert adapter is not None
        request = ProviderRequest(kind=generation.kind, model=MODEL, prompt="a lantern")
        result = await adapter.poll(request, job_id)
        while not isinstance(result, Finished):
            result = await adapter.poll(request, job_id)
        first = await http.get(str(result.outputs[0].url))
        key = output_key(generation.user_id, generation.id, 0, "image/png")
        await backend.store.put(key, first.content, "image/png")
        assert await generations.claim_job(generation.id, job_id)
        # ... and died while downloading output 1.
        await lapse(generation.id)
        mark = len(backend.sent)
        await sweep(QUEUED_CATALOGUE, requeue_after=60)
        await deliver_polls(backend, mark, generation, deps)

    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    assert sorted(downloads) == ["out-0.png", "out-1.png"]  # output 0 was not fetched again
    outputs = await generations.outputs_of(generation.id)
    assert [(o.index, o.content_type) for o in outputs] == [(0, "image/png"), (1, "image/png")]
    assert (outputs[0].storage_key, outputs[0].size_bytes) == (key, len(first.content))
    assert await backend.store.get(key) == first.content
    assert await backend.store.get(outputs[1].storage_key) != first.content
    assert submissions(fake_server[0]) == 1
    await assert_ledger_matches(generation.user_id)
