"""Routing through a model's providers: failover, content rejection, breakers, capacity
waits, queued jobs finished by polling or by webhook, and downloaded outputs. The providers
here are scripted stand-ins; the real adapters are tested against fake HTTP servers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator, Mapping

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from models.api_call import ApiCallLog
from models.error_event import ErrorEvent
from models.generation import Generation, GenerationStatus
from providers.base import (
    Finished,
    Pending,
    ProgressCallback,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
    WebhookUpdate,
)
from providers.http import CallRecord
from services import credits, generations, jobs, runner
from services.api_calls import record_call
from services.breakers import BreakerPolicy
from services.generations import NewGeneration
from services.provider_limits import Lease, ProviderLimit
from services.provider_routing.call_context import current_generation
from tests.support.fake_server import serve
from tests.support.generations import routed_catalogue
from tests.support.providers import provider_deps


def png(colour: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    async def image(request: Request) -> Response:
        return Response(png(), media_type="image/png")

    async def gone(request: Request) -> Response:
        return Response(b"expired", status_code=404)

    with serve(Starlette(routes=[Route("/out.png", image), Route("/gone.png", gone)])) as url:
        yield url


class Scripted:
    """A provider that answers from a script: each start() pops the next answer."""

    def __init__(self, name: str, *answers: Result | ProviderError) -> None:
        self.name = name
        self.answers = list(answers)
        self.polls: list[Result | ProviderError] = []
        self.started = 0
        self.cancelled: list[str] = []

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        self.started += 1
        await record_call(
            CallRecord(
                self.name, request.model, "POST", f"https://{self.name}/x", 200, 5, True, None
            )
        )
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        answer = self.polls.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        self.cancelled.append(job_id)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        if headers.get("x-signature") != "good":
            raise ProviderError("WEBHOOK_REJECTED", "bad signature", retryable=False)
        return WebhookUpdate(body.decode(), Finished([ProviderOutput("image/png", png("red"))]))


def unavailable() -> ProviderError:
    return ProviderError("PROVIDER_UNAVAILABLE", "The provider answered 503.", status_code=503)


async def new(user, cat) -> Generation:
    return await generations.create_generation(user, NewGeneration(prompt="p"), cat)


async def run_routed(user, deps, store, *routes: str) -> Generation:
    """A generation for `user` of a model routed to `routes` in turn, run as a worker's first
    step would run it; its row after."""
    cat = routed_catalogue(*routes)
    generation = await new(user, cat)
    await runner.run_generation(generation.id, cat, deps, store)
    return await Generation.get(id=generation.id)


async def test_the_second_route_serves_when_the_first_fails(make_user, backend):
    first = Scripted("alpha", unavailable())
    second = Scripted("beta", Finished([ProviderOutput("image/png", png())]))
    user = await make_user()
    row = await run_routed(user, provider_deps(first, second), backend.store, "alpha", "beta")
    assert (row.status, row.provider) == (GenerationStatus.COMPLETED, "beta")
    assert first.started == 3 and second.started == 1  # retried, then failed over once
    logged = await ApiCallLog.filter(generation_id=row.id).values_list("provider", flat=True)
    assert sorted(set(logged)) == ["alpha", "beta"]
    assert (await credits.get_balance(user.id)).available == 4


async def test_every_route_failing_fails_with_all_providers_failed(make_user, backend):
    deps = provider_deps(
        Scripted("alpha", unavailable()),
        Scripted("beta", ProviderError("PROVIDER_AUTH", "bad key", retryable=False)),
    )
    user = await make_user()
    row = await run_routed(user, deps, backend.store, "alpha", "beta")
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "ALL_PROVIDERS_FAILED")
    assert (await credits.get_balance(user.id)).available == 5
    assert await ErrorEvent.filter(error_code="ALL_PROVIDERS_FAILED").exists()


async def test_a_content_rejection_is_final(make_user, backend):
    rejecting = Scripted("alpha", ProviderError("CONTENT_REJECTED", "no", retryable=False))
    spare = Scripted("beta", Finished([ProviderOutput("image/png", png())]))
    deps = provider_deps(rejecting, spare)
    row = await run_routed(await make_user(), deps, backend.store, "alpha", "beta")
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "CONTENT_REJECTED")
    assert spare.started == 0 and rejecting.started == 1


async def test_an_open_breaker_skips_its_route(make_user, backend):
    down = Scripted("alpha", Finished([ProviderOutput("image/png", png())]))
    spare = Scripted("beta", Finished([ProviderOutput("image/png", png())]))
    deps = provider_deps(
        down, spare, breaker=BreakerPolicy(failure_threshold=1, min_calls=1, cooldown=60)
    )
    await deps.breakers.record("alpha", ok=False)
    row = await run_routed(await make_user(), deps, backend.store, "alpha", "beta")
    assert row.provider == "beta"
    assert down.started == 0


async def test_a_full_provider_makes_the_work_wait_not_fail(make_user, backend):
    busy = Scripted("alpha", Finished([ProviderOutput("image/png", png())]))
    deps = provider_deps(busy, limits={"alpha": ProviderLimit(max_concurrent=1)})
    held = await deps.limiter.acquire("alpha")
    assert isinstance(held, Lease)
    cat = routed_catalogue("alpha")
    generation = await new(await make_user(), cat)
    sent = len(backend.sent)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert (row.status, row.stage) == (GenerationStatus.PROCESSING, "waiting for alpha")
    actor, args, delay = backend.sent[sent]
    # The last argument is the lease the step was passed on with (services/generations/leases.py).
    assert (actor, args[:3]) == (jobs.RESUME, (str(generation.id), "1", "0")) and delay
    assert busy.started == 0
    await deps.limiter.release(held)
    await runner.resume(generation.id, 1, 0, cat, deps, backend.store)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED


async def test_a_queued_job_is_polled_and_its_url_outputs_downloaded(make_user, backend, files):
    queued = Scripted("alpha", Pending("job-1", stage="in queue (position 2)", poll_after=1))
    queued.polls = [
        Pending("job-1", progress=0.5, stage="processing"),
        Finished([ProviderOutput(url=f"{files}/out.png")]),
    ]
    deps = provider_deps(queued, limits={"alpha": ProviderLimit(max_concurrent=1)})
    cat = routed_catalogue("alpha")
    generation = await new(await make_user(), cat)
    sent = len(backend.sent)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.PROCESSING and row.provider_job_id == "job-1"
    assert row.stage == "in queue (position 2)"
    actor, args, _ = backend.sent[sent]
    assert (actor, args[:3]) == (jobs.POLL, (str(generation.id), "1", ""))
    assert isinstance(await deps.limiter.acquire("alpha"), type(None)) is False  # slot held

    await runner.poll(generation.id, 1, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert (row.progress, row.stage) == (0.45, "processing")
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    [output] = await generations.outputs_of(generation.id)
    assert output.content_type == "image/png"
    assert backend.store.path_for(output.storage_key).read_bytes() == png()
    await runner.poll(generation.id, 1, cat, deps, backend.store)  # a late duplicate: no-op
    assert (await Generation.get(id=generation.id)).version == row.version
    assert isinstance(await deps.limiter.acquire("alpha"), Lease)  # the slot came back


async def test_an_expired_output_url_fails_over(make_user, backend, files):
    expired = Scripted("alpha", Finished([ProviderOutput(url=f"{files}/gone.png")]))
    spare = Scripted("beta", Finished([ProviderOutput("image/png", png())]))
    deps = provider_deps(expired, spare)
    row = await run_routed(await make_user(), deps, backend.store, "alpha", "beta")
    assert row.provider == "beta"


async def test_a_webhook_finishes_the_job_once(make_user, backend):
    queued = Scripted("alpha", Pending("job-9"))
    deps = provider_deps(queued)
    cat = routed_catalogue("alpha")
    generation = await new(await make_user(), cat)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    with pytest.raises(ProviderError):
        await runner.handle_webhook(
            "alpha", {"x-signature": "forged"}, b"job-9", cat, deps, backend.store
        )
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.PROCESSING
    assert await runner.handle_webhook(
        "alpha", {"x-signature": "good"}, b"job-9", cat, deps, backend.store
    )
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED
    assert not await runner.handle_webhook(
        "alpha", {"x-signature": "good"}, b"job-9", cat, deps, backend.store
    )
    queued.polls = [Finished([ProviderOutput("image/png", png())])]
    await runner.poll(generation.id, 1, cat, deps, backend.store)  # the poller arrives late
    assert len(await generations.outputs_of(generation.id)) == 1


async def test_cancelling_a_queued_job_cancels_it_at_the_provider(make_user, backend):
    queued = Scripted("alpha", Pending("job-c"))
    deps = provider_deps(queued, limits={"alpha": ProviderLimit(max_concurrent=1)})
    cat = routed_catalogue("alpha")
    user = await make_user()
    generation = await new(user, cat)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    await generations.cancel(user, generation.id)
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    assert queued.cancelled == ["job-c"]
    assert isinstance(await deps.limiter.acquire("alpha"), Lease)
    assert current_generation.get() is None


async def test_image_to_image_fetches_stores_and_passes_the_input(make_user, backend, files):
    seen: list[ProviderRequest] = []

    class Recording(Scripted):
        async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
            seen.append(request)
            return await super().start(request, progress)

    cat = routed_catalogue("alpha", image_input=True)
    deps = provider_deps(Recording("alpha", Finished([ProviderOutput("image/png", png())])))
    user = await make_user()
    generation = await generations.create_generation(
        user,
        NewGeneration(prompt="p", input_image_url=f"{files}/out.png", strength=0.3),
        cat,
        fetch_allow_hosts=frozenset({"127.0.0.1"}),
    )
    await runner.run_generation(generation.id, cat, deps, backend.store)
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.COMPLETED
    [request] = seen
    assert (request.input_image, request.input_image_type, request.strength) == (
        png(),
        "image/png",
        0.3,
    )
    stored = backend.store.path_for(f"{user.id}/{generation.id}/input.png")
    assert stored.read_bytes() == png()


async def test_an_input_image_that_vanished_fails_and_refunds(make_user, backend, files):
    cat = routed_catalogue("local", image_input=True)
    user = await make_user()
    generation = await generations.create_generation(
        user,
        NewGeneration(prompt="p", input_image_url=f"{files}/gone.png"),
        cat,
        fetch_allow_hosts=frozenset({"127.0.0.1"}),
    )
    await runner.run_generation(generation.id, cat, provider_deps(), backend.store)
    row = await Generation.get(id=generation.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "INPUT_IMAGE_UNAVAILABLE")
    assert (await credits.get_balance(user.id)).available == 5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://10.0.0.5/x.png",
        "http://169.254.169.254/latest",
        "http://[::1]/x.png",
        "http://localhost/x.png",
        "ftp://example.com/x.png",
    ],
)
async def test_private_input_image_urls_are_bad_user_input(make_user, url):
    from services.errors import BadUserInput

    cat = routed_catalogue("local", image_input=True)
    user = await make_user()
    with pytest.raises(BadUserInput) as raised:
        await generations.create_generation(
            user, NewGeneration(prompt="p", input_image_url=url), cat
        )
    assert raised.value.field == "inputImageUrl"
    assert await Generation.filter(user_id=user.id).count() == 0


async def test_models_without_image_input_refuse_an_input_image(make_user):
    from services.errors import BadUserInput

    with pytest.raises(BadUserInput) as raised:
        await generations.create_generation(
            await make_user(),
            NewGeneration(prompt="p", input_image_url="http://93.184.215.14/a.png"),
            routed_catalogue("alpha"),
        )
    assert raised.value.field == "inputImageUrl" and "does not take" in raised.value.message


async def test_failed_provider_calls_are_error_events(make_user, backend):
    from models.error_event import ErrorCategory

    before = sum(
        e.count
        for e in await ErrorEvent.filter(
            error_code="PROVIDER_UNAVAILABLE", category=ErrorCategory.API
        )
    )
    cat = routed_catalogue("alpha", "beta")
    deps = provider_deps(
        Scripted("alpha", unavailable()),
        Scripted("beta", Finished([ProviderOutput("image/png", png())])),
    )
    generation = await new(await make_user(), cat)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    events = await ErrorEvent.filter(error_code="PROVIDER_UNAVAILABLE", category=ErrorCategory.API)
    assert sum(e.count for e in events) == before + 3  # each retry of the failing route
    assert any(e.message == "alpha call failed: PROVIDER_UNAVAILABLE" for e in events)


async def test_a_poll_that_learns_nothing_new_writes_nothing(make_user, backend):
    queued = Scripted("alpha", Pending("job-2", stage="processing"))
    queued.polls = [Pending("job-2", stage="processing"), Pending("job-2", stage="processing")]
    deps = provider_deps(queued)
    cat = routed_catalogue("alpha")
    generation = await new(await make_user(), cat)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    attached = await Generation.get(id=generation.id)
    sent = len(backend.sent)
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    await runner.poll(generation.id, 1, cat, deps, backend.store, pending_at=1.0)
    assert (await Generation.get(id=generation.id)).version == attached.version
    # Each poll sent the next one, saying how far into the job it still found it pending.
    follow_ups = backend.sent[sent:]
    assert [(actor, args[:2]) for actor, args, _ in follow_ups] == [
        (jobs.POLL, (str(generation.id), "1"))
    ] * 2
    assert all(float(args[2]) >= 0 for _, args, _ in follow_ups)


async def test_a_routes_expected_duration_times_the_first_poll(make_user, backend):
    """Before anything is learned, the catalogue's expected_seconds, not the adapter's 2 s."""
    queued = Scripted("gamma", Pending("job-e", poll_after=2))
    cat = routed_catalogue("gamma", expected_seconds=30)
    generation = await new(await make_user(), cat)
    sent = len(backend.sent)
    await runner.run_generation(generation.id, cat, provider_deps(queued), backend.store)
    [(actor, _, delay)] = backend.sent[sent:]
    assert actor == jobs.POLL and delay is not None and 29_000 <= delay <= 30_000


def test_a_route_expects_a_positive_duration():
    with pytest.raises(ValueError):
        routed_catalogue("gamma", expected_seconds=0)


def test_polls_wait_for_the_expected_end_of_a_job():
    # Nothing known yet: the adapter's pace.
    assert runner.poll_delay(0.0, 2.0, None) == 2.0
    # Known: right at the expected end, then every POLL_FRACTION of it.
    assert runner.poll_delay(1.0, 2.0, 10.0) == 9.0
    assert runner.poll_delay(10.0, 2.0, 10.0) == 10.0 * runner.POLL_FRACTION
    # A too short estimate: polls spread out with the time the job has run, no storm.
    assert runner.poll_delay(30.0, 2.0, 1.0) == 30.0 * runner.POLL_FRACTION
    assert runner.poll_delay(1.0, 2.0, 0.5) == runner.MIN_POLL
    # With webhooks a poll is only the safety net, backing off.
    assert runner.poll_delay(0.0, 2.0, 10.0, webhooks=True) == runner.WEBHOOK_FALLBACK_POLL
    assert runner.poll_delay(500.0, 2.0, 10.0, webhooks=True) == 500.0


def test_job_durations_are_learned_from_the_polls_that_bracket_them():
    durations = runner.Durations()
    key = ("alpha", "m")
    durations.observe(key, None, 12.0)  # found done at its first poll: only "at most 12"
    assert durations.get(key) is None
    durations.observe(key, 9.0, 11.0)  # pending at 9, done at 11
    assert durations.get(key) == 10.0
    durations.observe(key, 9.5, 10.5)
    assert durations.get(key) == 10.0
    # Jobs found done at their first poll pull a stale, too long estimate down.
    durations.observe(key, None, 10.0)
    assert (durations.get(key) or 0) < 10.0
    durations.observe(key, None, 4.0)
    assert (durations.get(key) or 0) < 4.0


async def _queued_job_finished_at_first_poll(make_user, files: str, path: str = "out.png"):
    queued = Scripted("alpha", Pending("job-1", stage="in queue"))
    queued.polls = [Finished([ProviderOutput(url=f"{files}/{path}")])]
    deps = provider_deps(queued)
    cat = routed_catalogue("alpha")
    generation = await new(await make_user(), cat)
    return generation, cat, deps


async def test_a_quick_download_completes_without_a_storing_outputs_state(
    make_user, backend, files
):
    """Downloads quicker than STORING_REPORT_AFTER: nobody could see "storing outputs", so
    it is not written: the poll's only change is the completion."""
    generation, cat, deps = await _queued_job_finished_at_first_poll(make_user, files)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    attached = await Generation.get(id=generation.id)
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    assert row.version == attached.version + 1


async def test_a_slow_download_says_it_is_storing_outputs(make_user, backend, files, monkeypatch):
    generation, cat, deps = await _queued_job_finished_at_first_poll(make_user, files)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    attached = await Generation.get(id=generation.id)
    seen: list[tuple[str, float]] = []
    download = runner._download

    async def slow(url, deps):
        await asyncio.sleep(0.05)
        row = await Generation.get(id=generation.id)
        seen.append((row.stage or "", row.progress))
        return await download(url, deps)

    monkeypatch.setattr(runner, "_download", slow)
    monkeypatch.setattr(runner, "STORING_REPORT_AFTER", 0.01)
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    assert seen == [("storing outputs", 0.9)]
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.COMPLETED
    assert row.version == attached.version + 2  # storing outputs, then completed
    [output] = await generations.outputs_of(generation.id)
    assert backend.store.path_for(output.storage_key).read_bytes() == png()


async def test_a_slow_download_of_a_cancelled_generation_stores_nothing(
    make_user, backend, files, monkeypatch
):
    generation, cat, deps = await _queued_job_finished_at_first_poll(make_user, files)
    await runner.run_generation(generation.id, cat, deps, backend.store)
    download = runner._download
    written: list[str] = []
    put = backend.store.put

    async def recording_put(key, data, content_type):
        written.append(key)
        await put(key, data, content_type)

    async def slow(url, deps):
        # Cancelled while the output downloads (the cancel goes through the API).
        await Generation.filter(id=generation.id).update(status=GenerationStatus.CANCELED)
        await asyncio.sleep(0.05)
        return await download(url, deps)

    monkeypatch.setattr(runner, "_download", slow)
    monkeypatch.setattr(runner, "STORING_REPORT_AFTER", 0.01)
    monkeypatch.setattr(backend.store, "put", recording_put)
    await runner.poll(generation.id, 1, cat, deps, backend.store)
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.CANCELED
    assert await generations.outputs_of(generation.id) == []
    assert written and not any(backend.store.path_for(k).exists() for k in written)
    assert await credits.release_for(generation.id)  # what the cancel would have done
