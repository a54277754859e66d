"""The lifecycle of a generation once created: start, progress, complete, fail, cancel, retry.
Each is one guarded state change (services.generations.repository) with its effects in the
same transaction: the hold settled, the owner notified, the stats counted, the workflow told."""

from __future__ import annotations

import uuid
from typing import Any

from tortoise import connections

from models.generation import (
    Generation,
    GenerationStatus,
    HoldState,
)
from models.user import User
from services import credits, jobs, notifications, stats
from services.error_events import record
from services.errors import InvalidTransition
from services.generations import leases
from services.generations.charges import charge, charged_in_full_sql
from services.generations.failures import FailureCode, failure_event, user_message
from services.generations.messages import announce
from services.generations.outputs import (
    OUTPUT_COLUMNS,
    StoredOutput,
    delete_outputs,
    output_values,
)
from services.generations.params import GenerationParams
from services.generations.provider_job import ProviderJob
from services.generations.repository import (
    CANCELABLE,
    NOT_A_VIEW_SQL,
    RETRYABLE,
    Guard,
    get_visible,
    had_outputs,
    is_view,
    live,
    matches,
    replace_outputs,
    row_and_extra,
    transition,
)
from services.generations.repository import now as _now
from services.jobs import enqueue_after_commit
from services.unit_of_work import after_commit, atomic, effects_only


async def start(generation_id: uuid.UUID) -> Generation | None:
    """QUEUED -> PROCESSING. None when the row is not QUEUED (duplicate or late delivery).
    The progress stays: a new attempt was queued at 0, and a workflow's next round of the
    same attempt goes on from where its bar was."""
    return await transition(
        generation_id,
        Guard((GenerationStatus.QUEUED,)),
        status=GenerationStatus.PROCESSING,
        stage="starting",
        started_at=_now(),
        # The starting worker's lease on the step (it renews it while the step runs).
        lease_expires_ms=leases.now_ms() + leases.lease_ms(),
    )


async def report_progress(
    generation_id: uuid.UUID, progress: float, stage: str, *, attempt: int | None = None
) -> bool:
    """Progress never goes backwards within an attempt. False once the generation left
    PROCESSING or moved to another attempt, which tells the worker to stop."""
    progress = min(max(progress, 0.0), 1.0)
    changed = await transition(
        generation_id,
        live(attempt, max_progress=progress),
        progress=progress,
        stage=stage[:120],
    )
    if changed is not None:
        return True
    return await matches(generation_id, live(attempt))


async def complete(
    generation_id: uuid.UUID,
    outputs: list[StoredOutput],
    provider: str,
    *,
    attempt: int | None = None,
) -> Generation | None:
    """PROCESSING -> COMPLETED with these outputs, the hold captured, in one transaction.
    The shared rows (the owner's account, the hourly counter) are written last, so their
    locks are held for as short a time as possible. The usual case on PostgreSQL is one
    statement (`_complete_at_once`); the rest takes the steps below."""
    if outputs:
        done = await _complete_at_once(generation_id, outputs, provider, attempt)
        if done is not None:
            return done
    async with atomic():
        generation = await transition(
            generation_id,
            live(attempt),
            status=GenerationStatus.COMPLETED,
            progress=1.0,
            stage="completed",
            provider=provider,
            completed_at=_now(),
            publish=False,
            observe=False,
        )
        if generation is None:
            return None
        await replace_outputs(generation, outputs, had_outputs=had_outputs(generation))
        if is_view(generation):
            _advance_workflow(generation)
        else:
            await notifications.generation_completed(generation)
        await credits.capture_for(generation_id, charge(generation, len(outputs)))
        await stats.observe_transition(generation)
        return generation


# The whole of a usual completion as one PostgreSQL statement (one round trip, no BEGIN or
# COMMIT: a statement is atomic on its own, and its row locks last only as long as it runs).
# It only matches what `complete`'s steps would do without anything else: a live attempt
# whose hold is still HELD (and whose owner has an account to capture from), no earlier
# outputs to delete, not a workflow's view (those advance their workflow), charged in full
# (`charges`), and finished before the "your generation is ready" notification is due
# (`notifications`). Anything else matches nothing here and goes through the steps, which
# decide it as before (one statement more for those). Each rule's SQL comes from the module
# that owns it: the capture and its ledger key from `credits`, the hourly counter from
# `stats`, the notice's threshold from `notifications`, the partial charge from `charges`.
# The data-modifying CTEs see the generation's new row through `gen`; the account's move is
# read by the ledger entry, and the hourly counter waits for the entry (the account's lock
# is taken before the counter's, in the same order as the steps).
_COUNTED = stats.count_generations_sql(
    "SELECT $11, gen.model, 1, 0, 0 FROM gen WHERE (SELECT count(*) FROM entry) >= 0"
)
_COMPLETE_AT_ONCE = f"""
WITH gen AS (
    UPDATE generations SET version = version + 1, status = $2, progress = 1.0,
        stage = 'completed', provider = $3, completed_at = $4, hold = $5
    WHERE id = $1 AND status = $6 AND ($7::int IS NULL OR attempts = $7) AND hold = $8
      AND {NOT_A_VIEW_SQL} AND queued_at > $9
      AND {charged_in_full_sql("$10")}
      AND NOT EXISTS (SELECT 1 FROM generation_outputs o WHERE o.generation_id = $1)
      AND (cost = 0 OR EXISTS (SELECT 1 FROM credit_accounts a
                               WHERE a.user_id = generations.user_id))
    RETURNING *
), outputs AS (
    INSERT INTO generation_outputs ({OUTPUT_COLUMNS})
    SELECT gen.id, v.* FROM gen, (VALUES {{rows}}) AS v
    RETURNING 1
), {credits.capture_ctes(generation="gen", created_at="$4")},
counted AS ({_COUNTED} RETURNING 1)
SELECT gen.*, {credits.MOVED_COLUMNS}, entry.id AS kiln_entry,
       (SELECT count(*) FROM outputs) AS kiln_outputs,
       (SELECT count(*) FROM counted) AS kiln_counted
FROM gen LEFT JOIN account ON true LEFT JOIN entry ON true
"""
# One output's values (`output_values`) and the statement's time ($4) as `created_at`.
_OUTPUT_VALUES = (
    "(${}::int, ${}::varchar, ${}::varchar, ${}::int, ${}::int, ${}::int, ${}::text, $4)"
)
_FIRST_OUTPUT = 12  # the number of the first output's first parameter
_AT_ONCE_SQL: dict[int, str] = {}


def _complete_at_once_sql(count: int) -> str:
    sql = _AT_ONCE_SQL.get(count)
    if sql is None:
        first = _FIRST_OUTPUT
        rows = ", ".join(
            _OUTPUT_VALUES.format(*range(first + 7 * i, first + 7 * (i + 1))) for i in range(count)
        )
        sql = _AT_ONCE_SQL[count] = _COMPLETE_AT_ONCE.format(rows=rows)
    return sql


async def _complete_at_once(
    generation_id: uuid.UUID, outputs: list[StoredOutput], provider: str, attempt: int | None
) -> Generation | None:
    """`complete` in one statement when it applies (see _COMPLETE_AT_ONCE); None when it did
    not (nothing was written), and the caller takes the steps."""
    connection = connections.get("default")
    if connection.capabilities.dialect != "postgres":
        return None
    now = _now()
    params: list[Any] = [
        str(generation_id),
        GenerationStatus.COMPLETED.value,
        provider,
        now,
        HoldState.CAPTURED.value,
        GenerationStatus.PROCESSING.value,
        attempt,
        HoldState.HELD.value,
        notifications.completion_noticed_if_queued_before(now),
        len(outputs),
        stats.hour_of(now),
    ]
    assert len(params) + 1 == _FIRST_OUTPUT
    for o in outputs:
        params += output_values(o)
    async with effects_only():
        rows = await connection.execute_query_dict(_complete_at_once_sql(len(outputs)), params)
        if not rows:
            return None
        generation, extra = row_and_extra(rows[0])
        # The effects of the steps, in their order: the new state with its outputs, the
        # owner's balance (when something was captured), the metrics.
        announce(generation, outputs)
        if extra["kiln_entry"] is not None:
            credits.announce_moved(generation.user_id, extra)
        stats.observe_after_commit(generation)
        return generation


async def fail(
    generation_id: uuid.UUID,
    code: FailureCode,
    what: str | None = None,
    *,
    detail: str | None = None,
    error: BaseException | None = None,
    source: str = "generation.run",
    provider: str | None = None,
    attempt: int | None = None,
) -> Generation | None:
    """Any live state -> FAILED, credits released, a running provider job stopped and the
    error event recorded (both after commit: a failure that rolls back records nothing).
    The owner reads `failures.user_message(code, what)`; the event says `detail` (what went
    wrong inside, default: the user's message) and carries `error`'s stack trace and
    `source` (the function that failed it).
    With `attempt`, only that attempt may be failed (a worker failing its own run)."""
    message = user_message(code, what)
    async with atomic():
        changes: dict[str, Any] = {"provider": provider} if provider else {}
        generation = await transition(
            generation_id,
            Guard(CANCELABLE, attempt=attempt),
            status=GenerationStatus.FAILED,
            stage="failed",
            error_code=code.value,
            error_message=message,
            completed_at=_now(),
            observe=False,
            **changes,
        )
        if generation is not None:
            _stop_provider_job(generation)
            await credits.release_for(generation_id)
            if is_view(generation):
                _advance_workflow(generation)
            else:
                await notifications.generation_failed(generation)
            await stats.observe_transition(generation)
            occurrence = failure_event(generation, code, detail, error, source)
            after_commit(lambda: record(occurrence))
        return generation


def _stop_provider_job(generation: Generation) -> None:
    """It ended while a provider job ran for it: the job that stops that work leaves after
    commit (the next poll may be a minute away, and a job that finishes first is billed)."""
    if generation.provider_job_id is not None:
        jobs.enqueue_after_commit(
            generation.id, actor=jobs.ABANDON, args=(str(generation.attempts),)
        )


def _advance_workflow(view: Generation) -> None:
    """A view reached its end: its workflow decides what comes next, after commit."""
    if view.parent_id is not None:
        jobs.enqueue_after_commit(
            view.parent_id,
            actor=jobs.ADVANCE,
            args=(str(GenerationParams.of(view).workflow_attempt or 1),),
        )


async def cancel(user: User, generation_id: uuid.UUID) -> Generation:
    """Live -> CANCELED, credits released, a running provider job stopped (after commit); a
    workflow's views are cancelled with it."""
    _not_a_view(await get_visible(user, generation_id))
    async with atomic():
        generation = await transition(
            generation_id,
            Guard(CANCELABLE),
            status=GenerationStatus.CANCELED,
            stage="canceled",
            completed_at=_now(),
        )
        if generation is None:
            current = await Generation.get(id=generation_id)
            raise InvalidTransition(f"A {current.status.value} generation cannot be canceled.")
        _stop_provider_job(generation)
        await credits.release_for(generation_id)
        await cancel_children(generation_id)
        return generation


async def cancel_children(parent_id: uuid.UUID) -> None:
    """End a workflow's views that still run (they hold no credits of their own)."""
    live = await Generation.filter(parent_id=parent_id, status__in=CANCELABLE).only("id")
    for child in live:
        canceled = await transition(
            child.id,
            Guard(CANCELABLE),
            status=GenerationStatus.CANCELED,
            stage="canceled",
            completed_at=_now(),
        )
        if canceled is not None:
            _stop_provider_job(canceled)


def _not_a_view(generation: Generation) -> None:
    if generation.parent_id is not None:
        raise InvalidTransition("This view belongs to a workflow: cancel or retry the workflow.")


async def retry(user: User, generation_id: uuid.UUID) -> Generation:
    """FAILED/CANCELED -> QUEUED again: same id, attempts + 1, credits held again (a
    workflow starts over from its first phase, its rounds of changes kept)."""
    current = await get_visible(user, generation_id)
    _not_a_view(current)
    async with atomic():
        generation = await transition(
            generation_id,
            Guard(RETRYABLE, attempt=current.attempts),
            status=GenerationStatus.QUEUED,
            phase=None,
            attempts=current.attempts + 1,
            progress=0.0,
            stage="queued",
            provider=None,
            error_code=None,
            error_message=None,
            started_at=None,
            completed_at=None,
            hold=HoldState.HELD,
            queued_at=_now(),
            provider_job=None,
            provider_job_id=None,
            publish=False,
        )
        if generation is None:
            current = await Generation.get(id=generation_id)
            raise InvalidTransition(f"A {current.status.value} generation cannot be retried.")
        await delete_outputs(generation_id)
        await credits.reserve_for(generation)
        announce(generation, [])
        # An admin may retry someone else's: then the owner's queue is looked up.
        owner_priority = user.priority if user.id == generation.user_id else None
        enqueue_after_commit(generation.id, priority=owner_priority)
        return generation


async def attach_job(
    generation_id: uuid.UUID, attempt: int, job: ProviderJob, stage: str
) -> Generation | None:
    """Remember the provider job that the current attempt waits on (see Generation), with the
    stage the provider reports: one visible change. None when the attempt is no longer live."""
    return await transition(
        generation_id,
        live(attempt),
        provider_job=job.to_json(),
        provider_job_id=job.job_id,
        stage=stage,
    )
