"""Leases on generation steps: work survives the death of the worker doing it.

A live generation's current step is always someone's until `lease_expires_ms`: the worker
running it (it renews the lease every half of LEASE_SECONDS while the step runs), or the
message sent for it (a later poll or resume, a re-send by the sweeper) until that message
should have run. A worker killed mid-step stops renewing; once its lease lapses the sweeper
(`resend_lapsed`) sends the step again, with the new lease's expiry as the message's token,
and the worker that receives it takes the step over (`take`) and resumes from what the row
saved: a submitted provider job is polled, not submitted again.

Each worker process looks for lapsed leases every quarter lease (`watch_forever`), the
sweeper at each of its runs. A QUEUED generation's lease marks the sweeper's last re-send of
its `generation.run` (`resend_queued`); `queued_at` is never moved, it is the user's wait.
A re-send is not repeated while it still waits on the queue (`jobs.resends_waiting`).

Every change is one conditional UPDATE on the lease's current value (a fencing token), so of
two workers, or two messages for the same step, exactly one goes on. The lease is epoch
milliseconds by the writing process's clock (hosts keep their clocks in step, as with NTP:
a skew of a good part of a lease would take steps over early): an integer compares exactly
on every backend and travels in a message as is. Nothing here publishes: a lease is
bookkeeping, not a visible state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise import connections
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from models.generation import Generation, GenerationStatus
from services import jobs
from services.generations.provider_job import ProviderJob
from services.sql import dialect_sql
from settings import get_settings

log = logging.getLogger(__name__)
PROCESSING = GenerationStatus.PROCESSING.value
QUEUED = GenerationStatus.QUEUED.value
# Rows are read this many at a time, and at most this many re-sent per call (the rest at
# the next one).
BATCH = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def lease_ms() -> int:
    return int(get_settings().lease_seconds * 1000)


def token_of(text: str) -> int | None:
    """A message's lease token ("" in messages sent without one)."""
    return int(text) if text.strip().lstrip("-").isdigit() else None


async def _execute(sql: str, params: list[object]) -> int:
    """Rows changed by a fixed UPDATE ... RETURNING id."""
    connection = connections.get("default")
    rows = await connection.execute_query_dict(dialect_sql(sql, connection), params)
    return len(rows)


@dataclass
class Held:
    """A lease this worker holds on a generation's step, as last written."""

    generation_id: uuid.UUID
    attempt: int
    expires_ms: int
    lost: bool = False

    async def renew(self) -> bool:
        """Extend the lease if it is still the one this worker wrote. False once another worker
        took the step over (the step's own conditional updates keep it from acting twice)."""
        new = now_ms() + lease_ms()
        changed = await _execute(
            "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND attempts = ? "
            "AND status = ? AND lease_expires_ms = ? RETURNING id",
            [new, str(self.generation_id), self.attempt, PROCESSING, self.expires_ms],
        )
        if changed:
            self.expires_ms = new
        else:
            self.lost = True
        return bool(changed)


async def acquire(generation_id: uuid.UUID, attempt: int) -> Held | None:
    """The lease of a step this worker already owns by another guard (it won the claim of a
    provider job's result): written whatever it was. None when the attempt is no longer
    live."""
    expires = now_ms() + lease_ms()
    changed = await _execute(
        "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND attempts = ? "
        "AND status = ? RETURNING id",
        [expires, str(generation_id), attempt, PROCESSING],
    )
    return Held(generation_id, attempt, expires) if changed else None


async def take(generation: Generation, token: int | None, *, step: str) -> Generation | None:
    """Take a PROCESSING generation's step (`generation` as just read) for this worker: when
    the message's `token` is the current lease (this message was sent for it), or when the
    lease lapsed (its worker died). A poll or resume (`step` other than RUN) without a token
    or on a row without a lease was sent by an older version: it goes on, and being the one
    that holds the lease now, stops the chain it may have raced. A provider job whose result
    a dead worker had claimed is armed again, so the poll that resumes the step can claim it.
    None: the step is someone else's, or over."""
    if generation.status is not GenerationStatus.PROCESSING:
        return None
    current = generation.lease_expires_ms
    live = current is not None and current != token and current >= now_ms()
    if step == jobs.RUN and (current is None or live):
        return None  # a worker (maybe of an older version) is running it
    if token is not None and live:
        return None  # the step was passed on to another message since this one left
    job = ProviderJob.of(generation)
    job_id = generation.provider_job_id or (job.job_id if job is not None else None)
    expires = now_ms() + lease_ms()
    lease_guard = "lease_expires_ms IS NULL" if current is None else "lease_expires_ms = ?"
    params: list[object] = [expires, job_id, str(generation.id), generation.attempts, PROCESSING]
    if current is not None:
        params.append(current)
    changed = await _execute(
        "UPDATE generations SET lease_expires_ms = ?, provider_job_id = ? WHERE id = ? "
        f"AND attempts = ? AND status = ? AND {lease_guard} RETURNING id",
        params,
    )
    if not changed:
        return None  # another worker took it first
    if current is not None and current != token:
        log.warning("generation %s: lease lapsed, step %s taken over", generation.id, step)
    generation.lease_expires_ms, generation.provider_job_id = expires, job_id
    return generation


def held(generation: Generation) -> Held | None:
    """The lease `generation` (as returned by the update that gave it) holds for this worker."""
    if generation.lease_expires_ms is None:
        return None
    return Held(generation.id, generation.attempts, generation.lease_expires_ms)


async def release(lease: Held) -> None:
    """Give the lease up at once (the step stopped on an outage and its message will be
    tried again): the retry may take the step over without waiting for it to lapse."""
    await _execute(
        "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND attempts = ? "
        "AND lease_expires_ms = ? RETURNING id",
        [now_ms() - 1, str(lease.generation_id), lease.attempt, lease.expires_ms],
    )


async def pass_on(generation_id: uuid.UUID, attempt: int, delay_seconds: float) -> str:
    """The step goes on in a message due in `delay_seconds` (a poll, a resume): the lease is
    the message's until half a lease after it is due (time for a worker to pick it up; a
    message that comes later than that finds the step sent again, and does nothing).
    Returns its token for the message ("" when the attempt is no longer live: the message
    will find nothing to do)."""
    expires = now_ms() + int(delay_seconds * 1000) + lease_ms() // 2
    changed = await _execute(
        "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND attempts = ? "
        "AND status = ? RETURNING id",
        [expires, str(generation_id), attempt, PROCESSING],
    )
    return str(expires) if changed else ""


@contextlib.asynccontextmanager
async def renewing(lease: Held | None) -> AsyncIterator[Held | None]:
    """Renews `lease` every half lease while the block runs (a small task beside the step).
    A block that raises gives the lease up, so that its retry need not wait for it to lapse
    (when the database is down that fails too, and the lease lapses on its own)."""
    if lease is None:
        yield None
        return
    task = asyncio.create_task(_renew_forever(lease), name=f"lease-{lease.generation_id}")
    try:
        yield lease
    except BaseException:
        with contextlib.suppress(Exception):
            await release(lease)
        raise
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _renew_forever(lease: Held) -> None:
    interval = get_settings().lease_seconds / 2
    while True:
        await asyncio.sleep(interval)
        try:
            if not await lease.renew():
                # Passed on to the step's next message, or taken over after a stall.
                log.info("generation %s: the lease is no longer this step's", lease.generation_id)
                return
        except Exception:
            # The database is unreachable: the next renewal may still be in time.
            log.warning("could not renew the lease of %s", lease.generation_id, exc_info=True)


async def _pages(query: QuerySet[Generation], *fields: str) -> AsyncIterator[list[Generation]]:
    """`query`'s rows, `fields` only, in pages of BATCH by id: rows skipped because their
    re-send still waits never hide the ones behind them."""
    last: uuid.UUID | None = None
    while True:
        page = (
            await (query if last is None else query.filter(id__gt=last))
            .order_by("id")
            .limit(BATCH)
            .only("id", *fields)
        )
        if page:
            yield page
        if len(page) < BATCH:
            return
        last = page[-1].id


async def resend_lapsed(waits_on_parts: Callable[[Generation], bool]) -> int:
    """PROCESSING generations whose lease lapsed (their worker died, their message was lost):
    the lease becomes the new message's for REQUEUE_AFTER, and the step is sent again (a
    poll when a provider job was submitted, else the run, which resumes). Each lapse is
    re-sent once, by whichever process gets to it first, and not again while that re-send
    waits on the queue. At most BATCH a call (the rest at the next). A workflow parent for
    which `waits_on_parts` (services.workflows; passed in, as the workflows import the
    lifecycle) is skipped: its parts hold leases of their own."""

    now = now_ms()
    hold_for = int(get_settings().requeue_after_seconds * 1000)
    lapsed = Generation.filter(status=GenerationStatus.PROCESSING, lease_expires_ms__lt=now)
    fields = ("kind", "phase", "stage", "params", "attempts", "lease_expires_ms", "provider_job")
    sent: list[str] = []
    async for rows in _pages(lapsed, *fields):
        waiting = await jobs.resends_waiting([str(row.id) for row in rows])
        resent: list[str] = []
        for row in rows:
            if waits_on_parts(row):
                continue  # its views hold leases of their own; the sweeper nudges the workflow
            if str(row.id) in waiting:
                continue  # the step's last re-send is still on the queue, its token still good
            token = now + hold_for
            if not await _execute(
                "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND attempts = ? "
                "AND status = ? AND lease_expires_ms = ? RETURNING id",
                [token, str(row.id), row.attempts, PROCESSING, row.lease_expires_ms],
            ):
                continue
            if ProviderJob.of(row) is not None:
                args = (str(row.id), str(row.attempts), "", str(token), jobs.RESENT)
                await jobs.send(jobs.POLL, *args)
            else:
                await jobs.send(jobs.RUN, str(row.id), str(token), jobs.RESENT)
            resent.append(str(row.id))
        await jobs.mark_resent(resent)
        sent += resent
        if len(sent) >= BATCH:
            break
    return len(sent)


async def resend_queued(requeue_after: float) -> int:
    """QUEUED generations whose message may never have arrived (queued longer than
    `requeue_after`) are sent again. Re-sends are proportional to lost work, not to time: a
    re-send still waiting on the queue is not repeated (its mark, `jobs.resends_waiting`),
    and the lease spaces re-sends out, each waiting at least as long as the generation has
    already waited (geometric, as polls are). `queued_at` stays when the user started
    waiting."""
    now = datetime.now(UTC)
    stale = Generation.filter(
        status=GenerationStatus.QUEUED, queued_at__lt=now - timedelta(seconds=requeue_after)
    ).filter(Q(lease_expires_ms__isnull=True) | Q(lease_expires_ms__lt=now_ms()))
    return await _resend_queued(stale, requeue_after, now)


async def resend_all_queued(older_than: float) -> int:
    """Redis lost its memory (it restarted empty): every queued message went with it, so
    every generation queued longer than `older_than` (its message left before the loss) is
    sent again now, whatever its last re-send."""
    now = datetime.now(UTC)
    queued = Generation.filter(
        status=GenerationStatus.QUEUED, queued_at__lt=now - timedelta(seconds=older_than)
    )
    return await _resend_queued(queued, older_than, now)


async def _resend_queued(query: QuerySet[Generation], minimum: float, now: datetime) -> int:
    sent: list[str] = []
    async for rows in _pages(query, "queued_at", "lease_expires_ms"):
        waiting = await jobs.resends_waiting([str(row.id) for row in rows])
        resent: list[str] = []
        for row in rows:
            if str(row.id) in waiting:
                continue  # the last re-send is still on the queue: nothing more was lost
            waited = max(minimum, (now - row.queued_at).total_seconds())
            previous = row.lease_expires_ms
            guard = "lease_expires_ms IS NULL" if previous is None else "lease_expires_ms = ?"
            params: list[object] = [now_ms() + int(waited * 1000), str(row.id), QUEUED]
            if previous is not None:
                params.append(previous)
            if await _execute(
                "UPDATE generations SET lease_expires_ms = ? WHERE id = ? AND status = ? "
                f"AND {guard} RETURNING id",
                params,
            ):
                await jobs.send(jobs.RUN, str(row.id), "", jobs.RESENT)
                resent.append(str(row.id))
        await jobs.mark_resent(resent)
        sent += resent
        if len(sent) >= BATCH:
            break
    return len(sent)


async def watch_forever(waits_on_parts: Callable[[Generation], bool]) -> None:
    """Each worker process looks for lapsed leases every quarter lease (the sweeper runs less
    often), so a step whose worker died is sent again within about a lease and a quarter of
    its last renewal. The conditional update sends each lapse once across processes."""
    interval = get_settings().lease_seconds / 4
    while True:
        await asyncio.sleep(interval)
        try:
            await resend_lapsed(waits_on_parts)
        except Exception:
            log.warning("looking for lapsed leases failed", exc_info=True)
