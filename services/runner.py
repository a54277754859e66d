"""Running a generation through its model's provider routes.

`run_generation` (actor `generation.run`) starts it and tries the routes in order: an open
breaker skips a route, a full provider makes the job wait (sent again later, not failed), a
route that fails after its retries hands over to the next one, a content rejection ends it.
Providers that queue work leave it PROCESSING with its provider job attached; `poll`
(actor `generation.poll`) and `handle_webhook` (POST /webhooks/providers/{name}) both hand
results to `_on_result`, which takes each result exactly once; a generation that ends while
its job runs has it stopped by `abandon` (actor `generation.abandon`). Outputs are downloaded
(from expiring provider URLs) or decoded and written to the output store before completion.
Every function takes ids and re-reads rows, so any message may be delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from models.generation import Generation, GenerationStatus
from providers.base import (
    Finished,
    Pending,
    Provider,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
    SignedWebhooks,
)
from services import generations, jobs, outages, workflows
from services.catalogue import Catalogue, Route
from services.fetch import Fetched, FetchError, fetch
from services.generations import StoredOutput, leases
from services.generations.failures import FailureCode
from services.generations.params import GenerationParams
from services.generations.provider_job import ProviderJob
from services.provider_limits import Lease, Wait
from services.provider_routing import failover, retries
from services.provider_routing.call_context import calls_for
from services.provider_routing.deps import ProviderDeps
from storage import OutputStore, output_key

log = logging.getLogger(__name__)
OUTPUT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4"})
INPUT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
# An output in hand whose provider named no type.
UNKNOWN_TYPE = "application/octet-stream"
# A provider's progress reports are written (a versioned update + publish each) at most this
# often per generation; the ones in between are dropped, the last one is never needed (the
# completion writes progress 1.0). Reports further apart than this are all written.
PROGRESS_INTERVAL = 0.04
# Downloading a provider's outputs is reported ("storing outputs") once it has taken this
# long; quicker downloads complete without that intermediate state.
STORING_REPORT_AFTER = 0.1
# Polling a queued provider job: never sooner than this after the previous poll, ...
MIN_POLL = 0.25
# ... once past the expected duration, every this fraction of the time the job has run
# (geometric: a too short estimate costs a few polls, never a storm of them), ...
POLL_FRACTION = 0.1
# ... and, when the provider also sends webhooks, polls are only the safety net for a lost one.
WEBHOOK_FALLBACK_POLL = 60.0


class Stopped(Exception):
    """The generation left PROCESSING under us (cancelled or timed out): drop the work."""


def _context(generation: Generation) -> contextlib.AbstractContextManager[None]:
    """Provider calls made meanwhile are logged against this generation and request."""
    return calls_for(generation.id, generation.request_id)


async def run_generation(
    generation_id: uuid.UUID,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    token: int | None = None,
) -> None:
    """Start a QUEUED generation, or take over a PROCESSING one whose worker's lease lapsed
    (or whose lease is `token`: the sweeper sent this message for it), resuming from what
    was saved: a submitted provider job is polled, not submitted again."""
    generation = await generations.start(generation_id)
    if generation is None:
        row = await generations.get_row(generation_id)
        if row is None or workflows.waits_on_parts(row):
            return  # a workflow past its front view goes on by its own steps
        claimed = _claimed_by_the_dead(row)  # before `take` arms the job again
        generation = await leases.take(row, token, step=jobs.RUN)
        if generation is None:
            return  # a duplicate or late message, or the step is another worker's
        job = ProviderJob.of(generation)
        if job is not None:
            await _poll(generation, job, catalogue, deps, store, pending_at=None, resumed=claimed)
            return
    async with leases.renewing(leases.held(generation)):
        await _guarded(generation, catalogue, deps, store, first_route=0)


async def resume(
    generation_id: uuid.UUID,
    attempt: int,
    route: int,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    token: int | None = None,
) -> None:
    """Go on from `route` once a provider that was full may have capacity again."""
    generation = await _live(generation_id, attempt)
    if generation is None or ProviderJob.of(generation) is not None:
        return
    generation = await leases.take(generation, token, step=jobs.RESUME)
    if generation is not None:
        async with leases.renewing(leases.held(generation)):
            await _guarded(generation, catalogue, deps, store, first_route=route)


async def poll(
    generation_id: uuid.UUID,
    attempt: int,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    pending_at: float | None = None,
    token: int | None = None,
) -> None:
    """Ask the provider about the attempt's job. `pending_at`: how long after its start the
    previous poll found it still pending (None: this is the first poll). `token`: the lease
    this poll was sent with; a poll whose step is another's (a second chain) does nothing."""
    generation = await generations.get_row(generation_id)
    job = None if generation is None else ProviderJob.of(generation)
    if generation is None or job is None or generation.attempts != attempt:
        return
    if generation.status is not GenerationStatus.PROCESSING:
        # Cancelled or timed out: `generation.abandon` went when it ended; this is the safety
        # net for a lost message (the job is claimed once, so only one of them cancels).
        await _abandon(generation, job, catalogue, deps)
        return
    claimed = _claimed_by_the_dead(generation)  # before `take` arms the job again
    taken = await leases.take(generation, token, step=jobs.POLL)
    if taken is not None:
        await _poll(taken, job, catalogue, deps, store, pending_at=pending_at, resumed=claimed)


def _claimed_by_the_dead(generation: Generation) -> bool:
    """The provider job's result was claimed (its id cleared) and the attempt is still live:
    the worker that claimed it died while storing its outputs. A step that takes this over
    keeps the outputs that worker stored (`_finish`, `resumed`)."""
    return ProviderJob.of(generation) is not None and generation.provider_job_id is None


async def _poll(
    generation: Generation,
    job: ProviderJob,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    *,
    pending_at: float | None,
    resumed: bool = False,
) -> None:
    """One poll of the provider job of a generation whose step this worker holds.
    `resumed`: a worker that died had claimed the job's result (see `_finish`)."""
    adapter = deps.registry.get(job.provider)
    if adapter is None:
        return
    route = failover.route_at(catalogue, generation.model, job.route)
    with _context(generation):
        try:
            result: Result | ProviderError = await retries.call(
                adapter.name,
                lambda: adapter.poll(_request(generation, route, deps), job.job_id),
                deps.retry,
                deps.breakers,
            )
        except ProviderError as error:
            result = error
    elapsed = _elapsed(job)
    if isinstance(result, Pending):
        await _report(generation, result)
        await _poll_later(generation, job, result, deps, pending_at=elapsed)
        return
    if isinstance(result, Finished):
        DURATIONS.observe(_duration_key(job), pending_at, elapsed)
    await _on_result(generation, job, result, catalogue, deps, store, polling=True, resumed=resumed)


async def abandon(
    generation_id: uuid.UUID, attempt: int, catalogue: Catalogue, deps: ProviderDeps
) -> None:
    """`generation.abandon`: the attempt ended (cancelled, timed out, its workflow cancelled)
    while its provider job ran. Sent after commit by that change, so the provider stops the
    work now rather than at the next poll. A redelivered or late message, another attempt,
    or a generation with no provider job attached: nothing to do."""
    generation = await generations.get_row(generation_id)
    job = None if generation is None else ProviderJob.of(generation)
    if (
        generation is None
        or job is None
        or generation.attempts != attempt
        or not generation.status.is_final
        or not generation.provider_job_id
    ):
        return
    await _abandon(generation, job, catalogue, deps)


async def handle_webhook(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
) -> bool:
    """A provider's webhook: verify it, then treat it like a poll's answer. False when it
    names no job we wait on (already handled, or not ours). Raises ProviderError
    (WEBHOOK_REJECTED) when the signature or body is wrong."""
    adapter = deps.registry.get(provider)
    if adapter is None:
        raise ProviderError("WEBHOOK_REJECTED", f"unknown provider {provider!r}", retryable=False)
    if isinstance(adapter, SignedWebhooks):  # fal: signing keys, cached for a day
        await adapter.refresh_keys()
    update = adapter.parse_webhook(headers, body)
    generation = await Generation.get_or_none(provider_job_id=update.job_id)
    job = None if generation is None else ProviderJob.of(generation)
    if generation is None or job is None:
        return False
    await _on_result(generation, job, update.result, catalogue, deps, store, polling=False)
    return True


async def _guarded(
    generation: Generation,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    *,
    first_route: int,
) -> None:
    with _context(generation):
        try:
            await _from_route(generation, first_route, catalogue, deps, store)
        except Stopped:
            return
        except Exception as error:
            if outages.as_unavailable(error) is not None:
                # The database (or Redis) is unreachable: not the generation's fault. The
                # actor tries the message again (tasks/generation.py), the lease lets it go on.
                raise
            log.exception("generation %s crashed", generation.id)
            await _fail(generation, FailureCode.INTERNAL_ERROR, error)


async def _from_route(
    generation: Generation,
    first_route: int,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
) -> None:
    spec = catalogue.models.get(generation.model)
    if spec is None:
        await _fail(generation, FailureCode.MODEL_UNAVAILABLE)
        return
    try:
        image = await _input_image(generation, deps, store)
    except FetchError as error:
        # Refused, unreachable, or too slow: the user's URL is at fault, not Kiln (a
        # warning, with the reason in its stack trace), and no provider has been paid.
        await _fail(generation, FailureCode.INPUT_IMAGE_UNAVAILABLE, error)
        return

    async def work(index: int, route: Route, adapter: Provider, lease: Lease) -> None:
        request = _request(generation, route, deps, image)
        result = await _start(generation, adapter, request, deps)
        if isinstance(result, Pending):
            await _attach(generation, index, route, adapter, result, lease, request, deps)
            return
        await deps.limiter.release(lease)
        await _finish(generation, result, adapter.name, deps, store)

    outcome = await failover.serve(spec.routes, first_route, deps, work, label=str(generation.id))
    if isinstance(outcome, failover.Full):
        await _wait_for_capacity(generation, outcome.index, outcome.route, outcome.wait)
    elif isinstance(outcome, failover.Rejected):
        await _fail(generation, FailureCode.CONTENT_REJECTED, outcome.error)
    elif isinstance(outcome, failover.Exhausted):
        await _fail(generation, FailureCode.ALL_PROVIDERS_FAILED, outcome.last_error)


@dataclass
class _Progress:
    """Coalesces one attempt's progress reports: a report is written only when it changes
    something and the previous write is at least PROGRESS_INTERVAL old. A write that finds
    the attempt no longer live raises Stopped."""

    generation: Generation
    written_at: float = field(default_factory=time.monotonic)

    async def report(self, progress: float, stage: str) -> None:
        now = time.monotonic()
        current = (self.generation.progress, self.generation.stage)
        if (progress, stage) == current or now - self.written_at < PROGRESS_INTERVAL:
            return
        self.written_at = now
        if not await generations.report_progress(
            self.generation.id, progress, stage, attempt=self.generation.attempts
        ):
            raise Stopped
        self.generation.progress, self.generation.stage = max(progress, current[0]), stage


async def _start(
    generation: Generation, adapter: Provider, request: ProviderRequest, deps: ProviderDeps
) -> Result:
    gate = _Progress(generation)

    async def progress(fraction: float, stage: str) -> None:
        # Downloading and storing take the last tenth of the bar.
        await gate.report(*workflows.progress_of(generation, 0.9 * fraction, stage))

    return await retries.call(
        adapter.name,
        lambda: adapter.start(request, progress),
        deps.retry,
        deps.breakers,
        stopped=(Stopped,),
    )


async def _attach(
    generation: Generation,
    route: int,
    spec: Route,
    adapter: Provider,
    pending: Pending,
    lease: Lease,
    request: ProviderRequest,
    deps: ProviderDeps,
) -> None:
    job = ProviderJob(
        job_id=pending.job_id,
        provider=adapter.name,
        route=route,
        limit_token=lease.token,
        model=request.model,
        accepted_at=time.time(),
        expected_seconds=spec.expected_seconds,
    )
    stage = pending.stage or "processing"
    attached = await generations.attach_job(generation.id, generation.attempts, job, stage)
    if attached is None:  # it ended while we were submitting: nobody else knows of the job
        await deps.limiter.release(lease)
        await _cancel_at_provider(adapter, request, pending.job_id, deps)
        return
    await _report(attached, pending)
    await _poll_later(attached, job, pending, deps, pending_at=None)


async def _poll_later(
    generation: Generation,
    job: ProviderJob,
    pending: Pending,
    deps: ProviderDeps,
    *,
    pending_at: float | None,
) -> None:
    """Send the next `generation.poll`, timed by `poll_delay`. `pending_at`: how far into the
    job this poll found it still pending (None when it was only just accepted)."""
    elapsed = _elapsed(job)
    webhooks = deps.webhook_url(job.provider) is not None
    delay = poll_delay(elapsed, pending.poll_after, _expected(job), webhooks=webhooks)
    token = await leases.pass_on(generation.id, generation.attempts, delay)
    await jobs.send(
        jobs.POLL,
        str(generation.id),
        str(generation.attempts),
        "" if pending_at is None else f"{pending_at:.3f}",
        token,
        delay_seconds=delay,
    )


def poll_delay(
    elapsed: float, hint: float, expected: float | None, *, webhooks: bool = False
) -> float:
    """Seconds until the next poll of a job that was still pending `elapsed` seconds after
    the provider accepted it. With webhooks the poll is only a safety net (backing off from
    WEBHOOK_FALLBACK_POLL). Otherwise: unknown duration, the adapter's `hint`; a known one,
    right at the expected end, then every POLL_FRACTION of the time it has run. A worker
    never waits: each poll is its own delayed message."""
    if webhooks:
        return max(WEBHOOK_FALLBACK_POLL, elapsed)
    if expected is None:
        return max(MIN_POLL, hint)
    if elapsed < expected - MIN_POLL:
        return expected - elapsed
    return max(MIN_POLL, POLL_FRACTION * max(expected, elapsed))


class Durations:
    """How long each (provider, model) takes, learned from the jobs this process polls, so
    polls land near the end of a job instead of every few seconds along it. Only a hint: a
    process that knows nothing polls at the adapter's pace, so nothing depends on another
    process's memory.

    A poll that finds a job done after one that found it pending brackets its duration:
    the midpoint is a sample (moving average). A job found done at its first poll only says
    "at most this long": the estimate is lowered a little, so a stale, too long estimate
    creeps down until a poll finds a job pending again."""

    WEIGHT = 0.2
    SHRINK = 0.99

    def __init__(self) -> None:
        self._estimates: dict[tuple[str, str], float] = {}

    def get(self, key: tuple[str, str]) -> float | None:
        return self._estimates.get(key)

    def observe(self, key: tuple[str, str], pending_at: float | None, done_at: float) -> None:
        if done_at <= 0:
            return
        current = self._estimates.get(key)
        if pending_at is not None and 0 < pending_at < done_at:
            sample = (pending_at + done_at) / 2
            self._estimates[key] = (
                sample if current is None else current + self.WEIGHT * (sample - current)
            )
        elif current is not None:
            self._estimates[key] = min(current, done_at) * self.SHRINK


DURATIONS = Durations()


def _duration_key(job: ProviderJob) -> tuple[str, str]:
    # Jobs attached by older versions name no model: their route stands for it.
    return (job.provider, job.model if job.model is not None else str(job.route))


def _elapsed(job: ProviderJob) -> float:
    at = job.accepted_at
    return 0.0 if at is None else max(0.0, time.time() - at)


def _expected(job: ProviderJob) -> float | None:
    """What the workers learned, else what the catalogue says, else nothing."""
    learned = DURATIONS.get(_duration_key(job))
    return learned if learned is not None else job.expected_seconds


async def _on_result(
    generation: Generation,
    job: ProviderJob,
    result: Result | ProviderError,
    catalogue: Catalogue,
    deps: ProviderDeps,
    store: OutputStore,
    *,
    polling: bool,
    resumed: bool = False,
) -> None:
    if isinstance(result, Pending):
        await _report(generation, result)  # a webhook's progress; polls come from poll()
        return
    if not await generations.claim_job(generation.id, job.job_id):
        return  # the webhook and the poller raced: the other one has it
    await deps.limiter.release(Lease(job.provider, job.limit_token))
    # Storing the outputs may take a while: the step is this worker's, renewed meanwhile.
    lease = await leases.acquire(generation.id, generation.attempts)
    async with leases.renewing(lease):
        with _context(generation):
            try:
                if isinstance(result, ProviderError):
                    raise result
                await _finish(generation, result, job.provider, deps, store, resumed=resumed)
            except Stopped:
                return
            except ProviderError as error:
                if error.code == FailureCode.CONTENT_REJECTED:
                    await _fail(generation, FailureCode.CONTENT_REJECTED, error)
                    return
                next_route = job.route + 1
                await _guarded(generation, catalogue, deps, store, first_route=next_route)


async def _finish(
    generation: Generation,
    finished: Finished,
    provider: str,
    deps: ProviderDeps,
    store: OutputStore,
    *,
    resumed: bool = False,
) -> None:
    """Store the outputs and complete. `resumed`: these are the outputs of a provider job
    whose result a worker claimed before it died; what it stored is kept, not fetched again
    (the same job gives the same outputs, and their keys are the same)."""
    # Outputs already in hand go straight to the store: completing is guarded anyway.
    # Downloads may take a while: once they have taken STORING_REPORT_AFTER, say so (and
    # stop if the attempt ended meanwhile); quicker ones complete without that
    # intermediate state, which nobody could have seen (it was a versioned update and two
    # publishes for every generation of a queueing provider).
    stored: list[StoredOutput] = []

    async def store_all() -> None:
        # A workflow's view keeps its view's number as its output index.
        first = GenerationParams.of(generation).view_index or 0
        redraw = workflows.round_of(generation)
        for index, output in enumerate(finished.outputs, start=first):
            key_for = functools.partial(
                output_key,
                generation.user_id,
                generation.id,
                index,
                attempt=generation.attempts,
                redraw=redraw,
            )
            kept = await _stored_before(store, key_for, output) if resumed else None
            if kept is not None:
                key, content_type, size = kept
            else:
                data, declared = output.data, output.content_type
                if data is None:
                    data, declared = await _download(output.url, deps)
                content_type = declared or UNKNOWN_TYPE
                key, size = key_for(content_type), len(data)
                await store.put(key, data, content_type)
            stored.append(
                StoredOutput(
                    index, key, content_type, size, output.width, output.height, output.text
                )
            )

    downloads = any(output.data is None for output in finished.outputs)
    work: asyncio.Future[None] | None = None
    try:
        if downloads:
            work = asyncio.ensure_future(store_all())
            done_in_time, _ = await asyncio.wait({work}, timeout=STORING_REPORT_AFTER)
            progress, stage = workflows.progress_of(generation, 0.9, "storing outputs")
            if not done_in_time and not await generations.report_progress(
                generation.id, progress, stage, attempt=generation.attempts
            ):
                raise Stopped
            await work
        else:
            await store_all()
        if not stored:
            raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider returned no outputs.")
        workflow = workflows.of(generation)
        if workflow is not None:
            done = await workflow.drawn(generation, stored, provider)
        else:
            done = await generations.complete(
                generation.id, stored, provider, attempt=generation.attempts
            )
    except BaseException as error:
        if work is not None and not work.done():
            if isinstance(error, Stopped):
                # Let it finish what it is writing, so every file it wrote is deleted below.
                with contextlib.suppress(Exception):
                    await work
            else:
                work.cancel()  # this task was cancelled: the downloads end with it
                with contextlib.suppress(BaseException):
                    await work
        await _delete(store, stored)
        raise
    if done is None:
        await _delete(store, stored)  # cancelled at the last moment: the files are orphans


async def _stored_before(
    store: OutputStore, key_for: Callable[[str], str], output: ProviderOutput
) -> tuple[str, str, int] | None:
    """The key, content type and size of what a worker that died stored for `output`, or
    None. A key that exists holds a complete object (a store's put is atomic). The key
    depends on the content type: known for data in hand, else found by the download, so the
    provider's declared type is looked for first, then each type a download may bring."""
    if output.data is not None:
        candidates = [output.content_type or UNKNOWN_TYPE]
    else:
        candidates = [t for t in (output.content_type, *sorted(OUTPUT_TYPES)) if t]
    looked: set[str] = set()
    for content_type in candidates:
        key = key_for(content_type)
        if key in looked:
            continue
        looked.add(key)
        found = await store.stat(key)
        if found is not None:
            return key, found.content_type or content_type, found.size
    return None


async def _download(url: str | None, deps: ProviderDeps) -> tuple[bytes, str]:
    if not url:
        raise ProviderError("PROVIDER_BAD_RESPONSE", "An output had neither data nor a URL.")
    try:
        fetched = await fetch(
            deps.http,
            url,
            max_bytes=deps.max_output_bytes,
            allowed_types=OUTPUT_TYPES,
            timing=deps.fetch_timing,
            allow_hosts=deps.fetch_allow_hosts,
        )
    except FetchError as error:
        # An expired, unreachable or too slow output: this route's work is lost, another
        # may serve.
        raise ProviderError(
            "OUTPUT_UNAVAILABLE", f"Could not fetch an output ({error})."
        ) from error
    return fetched.data, fetched.content_type


async def _delete(store: OutputStore, stored: list[StoredOutput]) -> None:
    for output in stored:
        try:
            await store.delete(output.storage_key)
        except Exception:
            log.warning("could not delete orphan output %s", output.storage_key)


async def _abandon(
    generation: Generation, job: ProviderJob, catalogue: Catalogue, deps: ProviderDeps
) -> None:
    """The generation ended (cancelled, timed out) while its provider job runs: stop the job
    and free its slot. Whoever claims the job does it (the abandon job, a late poll), once."""
    if not await generations.claim_job(generation.id, job.job_id):
        return
    await deps.limiter.release(Lease(job.provider, job.limit_token))
    adapter = deps.registry.get(job.provider)
    if adapter is None:
        log.warning("cannot cancel %s job %s: provider not configured", job.provider, job.job_id)
        return
    with _context(generation):
        request = _request(generation, _job_route(catalogue, generation, job), deps)
        await _cancel_at_provider(adapter, request, job.job_id, deps)


async def _cancel_at_provider(
    adapter: Provider, request: ProviderRequest, job_id: str, deps: ProviderDeps
) -> None:
    """Best effort, retried like any provider call (a throttled one after the wait it asks
    for); a cancel that still fails is logged: the job's result will be dropped unread."""
    try:
        await retries.call(
            adapter.name, lambda: adapter.cancel(request, job_id), deps.retry, deps.breakers
        )
    except ProviderError as error:
        log.info("could not cancel %s job %s: %s", adapter.name, job_id, error.code)


def _job_route(catalogue: Catalogue, generation: Generation, job: ProviderJob) -> Route:
    """The route a provider job was sent on; when the catalogue no longer has it, what the
    job itself remembers (a job is cancelled whatever became of its route)."""
    try:
        return failover.route_at(catalogue, generation.model, job.route)
    except ProviderError:
        return Route(job.provider, job.model or "")


async def _wait_for_capacity(generation: Generation, route: int, spec: Route, wait: Wait) -> None:
    """The provider is at its limit: try this route again later, without using a retry."""
    progress, stage = workflows.progress_of(generation, 0.0, f"waiting for {spec.provider}")
    if not await generations.report_progress(
        generation.id, progress, stage, attempt=generation.attempts
    ):
        return
    delay = max(wait.seconds, 0.05)
    token = await leases.pass_on(generation.id, generation.attempts, delay)
    await jobs.send(
        jobs.RESUME,
        str(generation.id),
        str(generation.attempts),
        str(route),
        token,
        delay_seconds=delay,
    )


async def _report(generation: Generation, pending: Pending) -> None:
    """A pending job's progress, written only when it says something new (most polls of a
    queued job change nothing, and each write is a versioned update and two publishes)."""
    fraction = pending.progress if pending.progress is not None else 0.0
    progress, stage = workflows.progress_of(
        generation, 0.9 * fraction, (pending.stage or "processing")[:120]
    )
    if stage == generation.stage and progress <= generation.progress:
        return
    await generations.report_progress(generation.id, progress, stage, attempt=generation.attempts)


async def _live(generation_id: uuid.UUID, attempt: int) -> Generation | None:
    generation = await generations.get_row(generation_id)
    if (
        generation is None
        or generation.attempts != attempt
        or generation.status is not GenerationStatus.PROCESSING
    ):
        return None
    return generation


async def _input_image(
    generation: Generation, deps: ProviderDeps, store: OutputStore
) -> Fetched | None:
    """Image-to-image: fetch the user's image with the SSRF-safe fetcher and keep a copy
    beside the outputs, so what the provider was given stays on record."""
    url = GenerationParams.of(generation).input_image_url
    if not url:
        return None
    image = await fetch(
        deps.http,
        url,
        max_bytes=deps.max_input_bytes,
        allowed_types=INPUT_TYPES,
        timing=deps.fetch_timing,
        allow_hosts=deps.fetch_allow_hosts,
    )
    extension = image.content_type.split("/")[1].replace("jpeg", "jpg")
    await store.put(
        f"{generation.user_id}/{generation.id}/input.{extension}", image.data, image.content_type
    )
    return image


def _request(
    generation: Generation, route: Route, deps: ProviderDeps, image: Fetched | None = None
) -> ProviderRequest:
    params = GenerationParams.of(generation)
    return ProviderRequest(
        kind=generation.kind,
        model=route.model,
        prompt=workflows.prompt_of(generation),
        negative_prompt=generation.negative_prompt,
        width=params.width,
        height=params.height,
        seed=params.seed,
        num_outputs=params.num_outputs,
        params=route.params,
        timeout=route.timeout,
        strength=params.strength,
        webhook_url=deps.webhook_url(route.provider),
        sizes=route.sizes,
        input_image=image.data if image else None,
        input_image_type=image.content_type if image else None,
    )


async def _fail(
    generation: Generation, code: FailureCode, error: BaseException | None = None
) -> None:
    """Fail this attempt (its error event says what `error` was)."""
    await generations.fail(generation.id, code, error=error, attempt=generation.attempts)
