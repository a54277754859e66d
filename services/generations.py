"""The generation lifecycle. Every state change is one conditional update (so a redelivered
message or a racing request changes nothing twice), bumps `version`, and publishes the new
state after commit on the generation's channel and its owner's."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q

from models.credits import LedgerKind
from models.generation import (
    Generation,
    GenerationKind,
    GenerationOutput,
    GenerationStatus,
    HoldState,
)
from models.user import Role, User
from realtime import channels
from services import credits, jobs, leases, notifications, response_cache, stats
from services.catalogue import Catalogue
from services.errors import BadUserInput, Conflict, InvalidTransition, NotFound
from services.events import publish_after_commit
from services.fetch import FetchRefused, check_url
from services.jobs import enqueue_after_commit
from services.sql import dialect_sql
from services.unit_of_work import atomic, effects_only
from settings import get_settings

IDEMPOTENCY_WINDOW = timedelta(hours=24)
CANCELABLE = (
    GenerationStatus.QUEUED,
    GenerationStatus.PROCESSING,
    GenerationStatus.AWAITING_APPROVAL,
)
RETRYABLE = (GenerationStatus.FAILED, GenerationStatus.CANCELED)


@dataclass(frozen=True)
class NewGeneration:
    prompt: str
    kind: GenerationKind = GenerationKind.IMAGE
    model: str | None = None
    preset: str | None = None
    negative_prompt: str | None = None
    input_image_url: str | None = None
    strength: float | None = None
    num_outputs: int = 1
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class StoredOutput:
    index: int
    storage_key: str
    content_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    text: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _validate(new: NewGeneration) -> None:
    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            raise BadUserInput(message, field=field)

    check(
        len(new.prompt.strip()) >= 1 and len(new.prompt) <= 4000,
        "prompt",
        "The prompt must be 1 to 4000 characters.",
    )
    check(
        new.negative_prompt is None or len(new.negative_prompt) <= 4000,
        "negativePrompt",
        "The negative prompt must be at most 4000 characters.",
    )
    check(1 <= new.num_outputs <= 4, "numOutputs", "numOutputs must be 1 to 4.")
    for name, value in (("width", new.width), ("height", new.height)):
        check(value is None or 64 <= value <= 2048, name, f"{name} must be 64 to 2048.")
    check(
        new.strength is None or 0.0 <= new.strength <= 1.0,
        "strength",
        "strength must be between 0 and 1.",
    )
    check(
        new.seed is None or 0 <= new.seed <= 2**31 - 1,
        "seed",
        "seed must be between 0 and 2147483647.",
    )
    check(
        new.idempotency_key is None or 1 <= len(new.idempotency_key) <= 255,
        "idempotencyKey",
        "idempotencyKey must be 1 to 255 characters.",
    )
    check(new.model is None or len(new.model) <= 120, "model", "Unknown model.")
    check(new.preset is None or len(new.preset) <= 120, "preset", "Unknown preset.")
    if new.input_image_url is not None:
        check(
            len(new.input_image_url) <= 2048
            and new.input_image_url.lower().startswith(("http://", "https://")),
            "inputImageUrl",
            "inputImageUrl must be an http(s) URL.",
        )


def _request_hash(new: NewGeneration) -> str:
    canonical = orjson.dumps(new.__dict__, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def create_generation(
    user: User,
    new: NewGeneration,
    catalogue: Catalogue,
    *,
    request_id: str | None = None,
    fetch_allow_hosts: frozenset[str] = frozenset(),
) -> Generation:
    """Validate, price, hold the credits and queue the work; the job leaves after commit.
    A cacheable request answered by the response cache is returned COMPLETED at once."""
    _validate(new)
    preset = catalogue.preset(new.preset) if new.preset else None
    if preset is not None and preset.kind != new.kind:
        raise BadUserInput(f"Preset {preset.id!r} makes {preset.kind.value}.", field="preset")
    workflow = None
    if new.kind is GenerationKind.MULTI_VIEW:
        # A product's views: drawn by the workflow's image model, priced by the workflow.
        workflow = catalogue.workflow("multi_view")
        if new.num_outputs != 1:
            raise BadUserInput("A multi-view workflow makes one set of views.", field="numOutputs")
        spec = catalogue.model(new.model or workflow.model, GenerationKind.IMAGE)
    else:
        spec = catalogue.model(new.model or (preset.model if preset else None), new.kind)
    if new.input_image_url is not None:
        if not spec.image_input:
            raise BadUserInput(
                f"Model {spec.id!r} does not take an input image.", field="inputImageUrl"
            )
        try:
            # Checked now for a clear answer; the worker fetches it with the same checks.
            await check_url(new.input_image_url, fetch_allow_hosts)
        except FetchRefused as refused:
            raise BadUserInput(
                f"inputImageUrl is refused: {refused}.", field="inputImageUrl"
            ) from refused
    per_output = preset.cost if preset else spec.cost_per_output
    cost = workflow.cost if workflow else per_output * new.num_outputs
    params: dict[str, Any] = {
        "numOutputs": new.num_outputs,
        "width": new.width,
        "height": new.height,
        "seed": new.seed,
        "strength": new.strength if new.strength is not None else (preset and preset.strength),
        "inputImageUrl": new.input_image_url,
    }
    params = {k: v for k, v in params.items() if v is not None}
    prompt = preset.render_prompt(new.prompt) if preset else new.prompt
    negative_prompt = new.negative_prompt or (preset.negative_prompt if preset else None)
    request_hash = _request_hash(new) if new.idempotency_key else None
    if new.idempotency_key:
        existing = await _idempotent_replay(user, new.idempotency_key, request_hash)
        if existing is not None:
            return existing
    key = None
    if spec.cache or (preset is not None and preset.cache):
        key = response_cache.cache_key(spec.id, new.kind, prompt, negative_prompt, params)
    cached = await response_cache.lookup(user.id, key, catalogue.cache_ttl) if key else None
    row = _NewRow(
        user_id=user.id,
        kind=new.kind,
        model=spec.id,
        preset=preset.id if preset else None,
        prompt=prompt,
        negative_prompt=negative_prompt,
        params=params,
        cost=0 if cached and not catalogue.charge_cache_hits else cost,
        request_id=request_id,
        idempotency_key=new.idempotency_key,
        request_hash=request_hash,
        cache_key=key,
    )
    try:
        if cached is None and row.cost > 0:
            queued = await _queue_at_once(row, priority=user.priority)
            if queued is not None:
                return queued
        async with atomic():
            generation = await Generation.create(
                **dataclasses.asdict(row),
                status=GenerationStatus.QUEUED,
                stage="queued",
                hold=HoldState.HELD,
                queued_at=_now(),
            )
            await credits.reserve_for(generation)
            if cached is not None:
                return await _answer_from_cache(generation, cached)
            announce(generation, [])
            enqueue_after_commit(generation.id, priority=user.priority)
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert.
        if new.idempotency_key:
            existing = await _idempotent_replay(user, new.idempotency_key, request_hash)
            if existing is not None:
                return existing
        raise
    return generation


@dataclass(frozen=True, slots=True)
class _NewRow:
    """What a new generation's row is made of, beyond the state every new one starts in."""

    user_id: uuid.UUID
    kind: GenerationKind
    model: str
    preset: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]
    cost: int
    request_id: str | None
    idempotency_key: str | None
    request_hash: str | None
    cache_key: str | None


# A new generation and the hold of its cost as one PostgreSQL statement (one round trip, no
# BEGIN or COMMIT: the statement is atomic on its own). The account's guarded UPDATE comes
# first: when the owner has no account or not enough available credit it matches nothing, and
# then neither the generation nor the ledger entry is written. The entry reads the account's
# new state, as `credits._move` does for a reservation.
_QUEUE_AT_ONCE = f"""
WITH account AS (
    UPDATE credit_accounts SET reserved = reserved + $1, {credits.account_moved()}
    WHERE user_id = $2 AND balance - reserved >= $1
    RETURNING balance, reserved, version
), gen AS (
    INSERT INTO generations (id, user_id, kind, status, progress, stage, model, preset, prompt,
        negative_prompt, params, cost, hold, attempts, version, request_id, idempotency_key,
        request_hash, cache_key, created_at, queued_at)
    SELECT $3, $2, $4, $5, 0, 'queued', $6, $7, $8, $9, $10, $1, $11, 1, 1, $12, $13, $14,
           $15, $16, $16
    FROM account
    RETURNING *
), entry AS (
    INSERT INTO ledger_entries (user_id, kind, amount, held, balance_after, generation_id,
                                reference, unique_key, created_at)
    SELECT $2, $17, -$1, $1, account.balance - account.reserved, gen.id, NULL, $18, $16
    FROM account, gen
    RETURNING id
)
SELECT gen.*, account.balance AS kiln_balance, account.reserved AS kiln_reserved,
       account.version AS kiln_version
FROM gen, account, entry
"""


async def _queue_at_once(new: _NewRow, *, priority: bool) -> Generation | None:
    """`create_generation`'s insert and hold in one statement on PostgreSQL (see
    _QUEUE_AT_ONCE), with the same effects after it; None elsewhere (the caller takes the
    steps). Raises as the steps would when the account cannot hold the cost."""
    connection = connections.get("default")
    if connection.capabilities.dialect != "postgres":
        return None
    generation_id, now = uuid.uuid4(), _now()
    params_field = Generation._meta.fields_map["params"]
    values: list[Any] = [
        new.cost,
        str(new.user_id),
        str(generation_id),
        new.kind.value,
        GenerationStatus.QUEUED.value,
        new.model,
        new.preset,
        new.prompt,
        new.negative_prompt,
        params_field.to_db_value(new.params, Generation),
        HoldState.HELD.value,
        new.request_id,
        new.idempotency_key,
        new.request_hash,
        new.cache_key,
        now,
        LedgerKind.RESERVE.value,
        credits.hold_key(generation_id, 1, "reserve"),
    ]
    async with effects_only():
        rows = await connection.execute_query_dict(_QUEUE_AT_ONCE, values)
        if not rows:
            await credits.refused(new.user_id, -new.cost)
        generation, extra = _row_and_extra(rows[0])
        # The steps' effects, in their order: the owner's balance, the new state, the job.
        _announce_move(generation, extra)
        announce(generation, [])
        enqueue_after_commit(generation.id, priority=priority)
    return generation


async def _answer_from_cache(generation: Generation, cached: Generation) -> Generation:
    """Complete a new generation with the cached one's outputs (the same stored files: they
    are never modified or deleted once completed)."""
    outputs = await outputs_of(cached.id)
    await GenerationOutput.bulk_create(
        [GenerationOutput(generation_id=generation.id, **o.__dict__) for o in outputs]
    )
    now = _now()
    done = await transition(
        generation.id,
        Q(status=GenerationStatus.QUEUED),
        status=GenerationStatus.COMPLETED,
        progress=1.0,
        stage="completed from cache",
        provider=cached.provider,
        started_at=now,
        completed_at=now,
        publish=False,
    )
    assert done is not None  # inserted in this transaction
    await credits.capture_for(generation.id)
    announce(done, outputs)
    return done


async def _idempotent_replay(user: User, key: str, request_hash: str | None) -> Generation | None:
    existing = await Generation.get_or_none(user_id=user.id, idempotency_key=key)
    if existing is None:
        return None
    if existing.created_at < _now() - IDEMPOTENCY_WINDOW:
        # Expired but not yet pruned: free the key for this new request.
        await Generation.filter(id=existing.id).update(idempotency_key=None)
        return None
    if existing.request_hash != request_hash:
        raise Conflict("This idempotency key was already used for a different request.")
    return existing


async def start(generation_id: uuid.UUID) -> Generation | None:
    """QUEUED -> PROCESSING. None when the row is not QUEUED (duplicate or late delivery)."""
    return await transition(
        generation_id,
        Guard((GenerationStatus.QUEUED,)),
        status=GenerationStatus.PROCESSING,
        progress=0.0,
        stage="starting",
        started_at=_now(),
        # The starting worker's lease on the step (it renews it while the step runs).
        lease_expires_ms=leases.now_ms() + leases.lease_ms(),
    )


def _live(attempt: int | None, *, max_progress: float | None = None) -> Guard:
    """PROCESSING, and still the worker's attempt: a worker of a cancelled attempt that is
    still running must not touch the attempt that a retry started."""
    return Guard((GenerationStatus.PROCESSING,), attempt=attempt, max_progress=max_progress)


async def report_progress(
    generation_id: uuid.UUID, progress: float, stage: str, *, attempt: int | None = None
) -> bool:
    """Progress never goes backwards within an attempt. False once the generation left
    PROCESSING or moved to another attempt, which tells the worker to stop."""
    progress = min(max(progress, 0.0), 1.0)
    changed = await transition(
        generation_id,
        _live(attempt, max_progress=progress),
        progress=progress,
        stage=stage[:120],
    )
    if changed is not None:
        return True
    return await _matches(generation_id, _live(attempt))


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
            _live(attempt),
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
        await replace_outputs(generation, outputs, had_outputs=_had_outputs(generation))
        if generation.parent_id is None:
            await notifications.generation_completed(generation)
        else:
            _advance_workflow(generation)
        await credits.capture_for(generation_id, _charge(generation, len(outputs)))
        await stats.observe_transition(generation)
        return generation


# The whole of a usual completion as one PostgreSQL statement (one round trip, no BEGIN or
# COMMIT: a statement is atomic on its own, and its row locks last only as long as it runs).
# It only matches what `complete`'s steps would do without anything else: a live attempt
# whose hold is still HELD (and whose owner has an account to capture from), no earlier
# outputs to delete, not a workflow's view (those advance their workflow), delivered all it
# was asked (no partial charge), and finished sooner than the "your generation is ready"
# notification's threshold. Anything else matches nothing here and goes through the steps,
# which decide it as before (one statement more for those).
# The data-modifying CTEs see the generation's new row through `gen`; the account's move is
# read by the ledger entry, and the hourly counter waits for the entry (the account's lock
# is taken before the counter's, in the same order as the steps).
_COMPLETE_AT_ONCE = f"""
WITH gen AS (
    UPDATE generations SET version = version + 1, status = $2, progress = 1.0,
        stage = 'completed', provider = $3, completed_at = $4, hold = $5
    WHERE id = $1 AND status = $6 AND ($7::int IS NULL OR attempts = $7) AND hold = $8
      AND parent_id IS NULL AND queued_at > $9
      AND (kind = $10 OR COALESCE((params->>'numOutputs')::int, 1) <= $11)
      AND NOT EXISTS (SELECT 1 FROM generation_outputs o WHERE o.generation_id = $1)
      AND (cost = 0 OR EXISTS (SELECT 1 FROM credit_accounts a
                               WHERE a.user_id = generations.user_id))
    RETURNING *
), outputs AS (
    INSERT INTO generation_outputs (generation_id, "index", storage_key, content_type,
                                    size_bytes, width, height, "text", created_at)
    SELECT gen.id, v.* FROM gen, (VALUES {{rows}}) AS v
    RETURNING 1
), account AS (
    UPDATE credit_accounts a SET balance = a.balance - gen.cost,
        reserved = a.reserved - gen.cost, {credits.account_moved("a")}
    FROM gen WHERE a.user_id = gen.user_id AND gen.cost > 0
    RETURNING a.balance, a.reserved, a.version
), entry AS (
    INSERT INTO ledger_entries (user_id, kind, amount, held, balance_after, generation_id,
                                reference, unique_key, created_at)
    SELECT gen.user_id, $12, 0, -gen.cost, account.balance - account.reserved, gen.id, NULL,
           'gen:' || gen.id::text || ':' || gen.attempts::text || ':capture', $4
    FROM gen, account
    RETURNING id
), counted AS (
    INSERT INTO generation_hourly_counts (hour, model, completed, failed, canceled)
    SELECT $13, gen.model, 1, 0, 0 FROM gen WHERE (SELECT count(*) FROM entry) >= 0
    ON CONFLICT (hour, model) DO UPDATE SET completed = generation_hourly_counts.completed + 1
    RETURNING 1
)
SELECT gen.*, account.balance AS kiln_balance, account.reserved AS kiln_reserved,
       account.version AS kiln_version, entry.id AS kiln_entry,
       (SELECT count(*) FROM outputs) AS kiln_outputs,
       (SELECT count(*) FROM counted) AS kiln_counted
FROM gen LEFT JOIN account ON true LEFT JOIN entry ON true
"""
_OUTPUT_VALUES = (
    "(${}::int, ${}::varchar, ${}::varchar, ${}::int, ${}::int, ${}::int, ${}::text, $4)"
)


def _complete_at_once_sql(count: int) -> str:
    sql = _SQL_CACHE.get(("complete_at_once", count))
    if sql is None:
        rows = ", ".join(
            _OUTPUT_VALUES.format(*range(14 + 7 * i, 21 + 7 * i)) for i in range(count)
        )
        sql = _SQL_CACHE[("complete_at_once", count)] = _COMPLETE_AT_ONCE.format(rows=rows)
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
    threshold = timedelta(seconds=get_settings().long_generation_notify_seconds)
    params: list[Any] = [
        str(generation_id),
        GenerationStatus.COMPLETED.value,
        provider,
        now,
        HoldState.CAPTURED.value,
        GenerationStatus.PROCESSING.value,
        attempt,
        HoldState.HELD.value,
        now - threshold,
        GenerationKind.MULTI_VIEW.value,
        len(outputs),
        LedgerKind.CAPTURE.value,
        stats.hour_of(now),
    ]
    for o in outputs:
        params += [o.index, o.storage_key, o.content_type, o.size_bytes, o.width, o.height, o.text]
    async with effects_only():
        rows = await connection.execute_query_dict(_complete_at_once_sql(len(outputs)), params)
        if not rows:
            return None
        generation, extra = _row_and_extra(rows[0])
        # The effects of the steps, in their order: the new state with its outputs, the
        # owner's balance (when something was captured), the metrics.
        announce(generation, outputs)
        if extra["kiln_entry"] is not None:
            _announce_move(generation, extra)
        stats.observe_after_commit(generation)
        return generation


def _row_and_extra(row: dict[str, Any]) -> tuple[Generation, dict[str, Any]]:
    """A one-statement change's result: the generation's row, and the statement's own
    `kiln_`-prefixed columns (the account's move, counts)."""
    columns = dict(row)
    extra = {k: columns.pop(k) for k in row if k.startswith("kiln_")}
    return Generation._init_from_db(**columns), extra


def _announce_move(generation: Generation, extra: dict[str, Any]) -> None:
    """The owner's balance as the statement's account move left it."""
    credits.announce_balance(
        generation.user_id,
        int(extra["kiln_balance"]),
        int(extra["kiln_reserved"]),
        int(extra["kiln_version"]),
    )


def _charge(generation: Generation, delivered: int) -> int | None:
    """A batch the provider only partly delivered is charged per delivered output and the
    rest is refunded; None charges the whole cost."""
    requested = int(generation.params.get("numOutputs", 1))
    if generation.kind is GenerationKind.MULTI_VIEW or not 0 < delivered < requested:
        return None
    return generation.cost * delivered // requested


async def fail(
    generation_id: uuid.UUID,
    code: str,
    message: str,
    *,
    provider: str | None = None,
    attempt: int | None = None,
) -> Generation | None:
    """Any live state -> FAILED, credits released, a running provider job stopped (after
    commit). The caller records the error event.
    With `attempt`, only that attempt may be failed (a worker failing its own run)."""
    async with atomic():
        changes: dict[str, Any] = {"provider": provider} if provider else {}
        generation = await transition(
            generation_id,
            Guard(CANCELABLE, attempt=attempt),
            status=GenerationStatus.FAILED,
            stage="failed",
            error_code=code[:64],
            error_message=message,
            completed_at=_now(),
            observe=False,
            **changes,
        )
        if generation is not None:
            _stop_provider_job(generation)
            refunded = await credits.release_for(generation_id)
            if generation.parent_id is None:
                await notifications.generation_failed(generation, refunded=refunded)
            else:
                _advance_workflow(generation)
            await stats.observe_transition(generation)
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
            view.parent_id, actor=jobs.ADVANCE, args=(str(view.params.get("workflowAttempt", 1)),)
        )


async def cancel(user: User, generation_id: uuid.UUID) -> Generation:
    """Live -> CANCELED, credits released, a running provider job stopped (after commit); a
    workflow's views are cancelled with it."""
    _not_a_view(await get_visible(user, generation_id))
    async with atomic():
        generation = await transition(
            generation_id,
            Q(status__in=CANCELABLE),
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
            Q(status__in=CANCELABLE),
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
    workflow starts over from its front view, its rounds of changes kept)."""
    current = await get_visible(user, generation_id)
    _not_a_view(current)
    params = {k: v for k, v in current.params.items() if k not in ("phase", "features")}
    async with atomic():
        generation = await transition(
            generation_id,
            Q(status__in=RETRYABLE, attempts=current.attempts),
            status=GenerationStatus.QUEUED,
            params=params,
            attempts=F("attempts") + 1,
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
        await GenerationOutput.filter(generation_id=generation_id).delete()
        await credits.reserve_for(generation)
        announce(generation, [])
        # An admin may retry someone else's: then the owner's queue is looked up.
        owner_priority = user.priority if user.id == generation.user_id else None
        enqueue_after_commit(generation.id, priority=owner_priority)
        return generation


async def attach_job(
    generation_id: uuid.UUID, attempt: int, job: dict[str, Any], stage: str
) -> Generation | None:
    """Remember the provider job that the current attempt waits on (see Generation), with the
    stage the provider reports: one visible change. None when the attempt is no longer live."""
    return await transition(
        generation_id, _live(attempt), provider_job=job, provider_job_id=job["job"], stage=stage
    )


async def claim_job(generation_id: uuid.UUID, job_id: str) -> bool:
    """Take the job's result for processing. Exactly one of the poller and the webhook wins,
    so a result delivered both ways is handled once. Fixed SQL: every finished provider job
    passes here (see Guard on the ORM's cost)."""
    connection = connections.get("default")
    rows = await connection.execute_query_dict(
        dialect_sql(_CLAIM_JOB, connection), [str(generation_id), job_id]
    )
    return bool(rows)


_CLAIM_JOB = (
    "UPDATE generations SET provider_job_id = NULL WHERE id = ? AND provider_job_id = ? "
    "RETURNING id"
)


async def get_row(generation_id: uuid.UUID) -> Generation | None:
    """`Generation.get_or_none(id=...)` as fixed SQL, for the worker's reads of a generation
    on every poll and resume."""
    connection = connections.get("default")
    rows = await connection.execute_query_dict(
        dialect_sql("SELECT * FROM generations WHERE id = ?", connection), [str(generation_id)]
    )
    return Generation._init_from_db(**rows[0]) if rows else None


async def prune_idempotency_keys() -> int:
    """Sweeper: keys older than the window are forgotten, so they can be used again."""
    return await Generation.filter(
        idempotency_key__isnull=False, created_at__lt=_now() - IDEMPOTENCY_WINDOW
    ).update(idempotency_key=None)


@dataclass(frozen=True)
class Guard:
    """The condition of a state change on the worker's hot path, as fixed SQL (building a
    Tortoise query cost more CPU than running it): the status is one of `statuses`, and the
    attempt and progress are as given when set."""

    statuses: tuple[GenerationStatus, ...]
    attempt: int | None = None
    # progress <= this: progress never goes backwards within an attempt
    max_progress: float | None = None


async def transition(
    generation_id: uuid.UUID,
    guard: Q | Guard,
    *,
    publish: bool = True,
    observe: bool = True,
    **changes: Any,
) -> Generation | None:
    """One conditional UPDATE ... RETURNING that bumps `version`; publishes the new row (after
    commit) only if it matched. A change that writes nothing else runs as that one statement,
    without BEGIN/COMMIT. `observe=False` leaves the stats of a status change to the caller
    (`stats.observe_transition`), which runs them last in its transaction: the hourly counter
    row is shared by every finishing generation, so its lock is taken just before commit."""
    status = changes.get("status")
    counted = observe and status is not None and GenerationStatus(status).is_final
    async with atomic() if counted else effects_only():
        if isinstance(guard, Guard):
            generation = await _set_returning(generation_id, guard, changes)
        else:
            generation = await _update_returning(guard & Q(id=generation_id), changes)
        if generation is None:
            return None
        if observe and status is not None:
            await stats.observe_transition(generation)
        if publish:
            outputs = (
                await outputs_of(generation_id)
                if generation.status is GenerationStatus.COMPLETED
                else []
            )
            announce(generation, outputs)
        return generation


async def _update_returning(guard: Q, changes: dict[str, Any]) -> Generation | None:
    """`Generation.filter(guard).update(version=version + 1, **changes)`, returning the updated
    row in the same round trip (PostgreSQL and SQLite >= 3.35 both know RETURNING). Tortoise's
    update() only returns a count, so its query is built and then run with RETURNING."""
    query = Generation.filter(guard).update(version=F("version") + 1, **changes)
    query._choose_db_if_not_chosen(True)
    query._make_query()
    sql, params = query.query.get_parameterized_sql()
    rows = await query._db.execute_query_dict(f"{sql} RETURNING *", params)
    if not rows:
        return None
    return Generation._init_from_db(**rows[0])


# A completion also reads whether the row had outputs before, in the same statement: it
# only deletes old outputs (a workflow's front view) when there are some.
_HAD_OUTPUTS = "kiln_had_outputs"
_SQL_CACHE: dict[tuple[Any, ...], str] = {}


def _set_sql(
    names: tuple[str, ...], guard: Guard, outputs: bool, connection: BaseDBAsyncClient
) -> str:
    """The UPDATE of `_set_returning`, built once per shape and dialect."""
    key = (
        names,
        len(guard.statuses),
        guard.attempt is not None,
        guard.max_progress is not None,
        outputs,
        connection.capabilities.dialect,
    )
    sql = _SQL_CACHE.get(key)
    if sql is None:
        fields = Generation._meta.fields_map
        sets = "".join(f', "{fields[n].source_field or n}" = ?' for n in names)
        where = _guard_where(guard)
        returning = "*"
        if outputs:
            returning += (
                ", EXISTS (SELECT 1 FROM generation_outputs o"
                f" WHERE o.generation_id = generations.id) AS {_HAD_OUTPUTS}"
            )
        sql = _SQL_CACHE[key] = dialect_sql(
            f"UPDATE generations SET version = version + 1{sets} WHERE {where} "
            f"RETURNING {returning}",
            connection,
        )
    return sql


async def _set_returning(
    generation_id: uuid.UUID, guard: Guard, changes: dict[str, Any]
) -> Generation | None:
    """`_update_returning` for a `Guard` and plain values, as fixed SQL."""
    connection = connections.get("default")
    names = tuple(changes)
    fields = Generation._meta.fields_map
    params: list[Any] = [fields[n].to_db_value(changes[n], Generation) for n in names]
    params += _guard_params(generation_id, guard)
    outputs = changes.get("status") is GenerationStatus.COMPLETED
    rows = await connection.execute_query_dict(_set_sql(names, guard, outputs, connection), params)
    if not rows:
        return None
    row = dict(rows[0])
    had_outputs = bool(row.pop(_HAD_OUTPUTS, True))
    generation = Generation._init_from_db(**row)
    if outputs:
        setattr(generation, _HAD_OUTPUTS, had_outputs)
    return generation


def _had_outputs(generation: Generation) -> bool:
    """True unless the statement that returned the row saw it without outputs."""
    return bool(getattr(generation, _HAD_OUTPUTS, True))


async def _matches(generation_id: uuid.UUID, guard: Guard) -> bool:
    connection = connections.get("default")
    sql = dialect_sql(f"SELECT 1 FROM generations WHERE {_guard_where(guard)}", connection)
    return bool(await connection.execute_query_dict(sql, _guard_params(generation_id, guard)))


def _guard_where(guard: Guard) -> str:
    where = f"id = ? AND status IN ({', '.join('?' * len(guard.statuses))})"
    if guard.attempt is not None:
        where += " AND attempts = ?"
    if guard.max_progress is not None:
        where += " AND progress <= ?"
    return where


def _guard_params(generation_id: uuid.UUID, guard: Guard) -> list[Any]:
    """The parameters of `_guard_where(guard)`, in its order."""
    params: list[Any] = [str(generation_id), *(s.value for s in guard.statuses)]
    if guard.attempt is not None:
        params.append(guard.attempt)
    if guard.max_progress is not None:
        params.append(guard.max_progress)
    return params


async def outputs_of(generation_id: uuid.UUID) -> list[StoredOutput]:
    rows = await GenerationOutput.filter(generation_id=generation_id).order_by("index")
    return [stored_output(row) for row in rows]


def stored_output(row: GenerationOutput) -> StoredOutput:
    return StoredOutput(
        row.index,
        row.storage_key,
        row.content_type,
        row.size_bytes,
        row.width,
        row.height,
        row.text,
    )


async def replace_outputs(
    generation: Generation, outputs: list[StoredOutput], *, had_outputs: bool = True
) -> None:
    """Store these as the generation's outputs (inside the caller's transaction) and
    announce its state with them. `had_outputs=False` (known from the statement that moved
    it) skips deleting what is not there."""
    connection = connections.get("default")
    if had_outputs:
        await connection.execute_query(
            dialect_sql("DELETE FROM generation_outputs WHERE generation_id = ?", connection),
            [str(generation.id)],
        )
    if outputs:
        # One multi-row INSERT of fixed SQL instead of a bulk_create (model objects, an
        # executemany and its prepared statement) for what is usually one row.
        now = Generation._meta.fields_map["created_at"].to_db_value(_now(), GenerationOutput)
        params: list[Any] = []
        for o in outputs:
            params += [str(generation.id), o.index, o.storage_key, o.content_type]
            params += [o.size_bytes, o.width, o.height, o.text, now]
        await connection.execute_query(
            dialect_sql(_INSERT_OUTPUTS + ", ".join([_OUTPUT_ROW] * len(outputs)), connection),
            params,
        )
    announce(generation, outputs)


_INSERT_OUTPUTS = (
    'INSERT INTO generation_outputs (generation_id, "index", storage_key, content_type, '
    'size_bytes, width, height, "text", created_at) VALUES '
)
_OUTPUT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"


def announce(generation: Generation, outputs: list[StoredOutput]) -> None:
    """Publish the generation's state, with these outputs, after commit."""
    message = snapshot(generation, outputs)
    publish_after_commit(channels.generation(generation.id), message)
    publish_after_commit(channels.user_generations(generation.user_id), message)


def snapshot(generation: Generation, outputs: list[StoredOutput]) -> dict[str, Any]:
    """The whole visible state, as published to subscribers (JSON-safe)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(generation.id),
        "user_id": str(generation.user_id),
        "parent_id": str(generation.parent_id) if generation.parent_id else None,
        "kind": generation.kind.value,
        "status": generation.status.value,
        "progress": generation.progress,
        "stage": generation.stage,
        "model": generation.model,
        "preset": generation.preset,
        "provider": generation.provider,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "params": generation.params,
        "cost": generation.cost,
        "attempts": generation.attempts,
        "error_code": generation.error_code,
        "error_message": generation.error_message,
        "version": generation.version,
        "created_at": iso(generation.created_at),
        "started_at": iso(generation.started_at),
        "completed_at": iso(generation.completed_at),
        "outputs": [o.__dict__ for o in outputs],
    }


async def get_visible(user: User, generation_id: uuid.UUID) -> Generation:
    """The generation if the user may see it; NotFound otherwise (never 'forbidden', which
    would confirm that the id exists)."""
    query = Generation.filter(id=generation_id)
    if user.role is not Role.ADMIN:
        query = query.filter(user_id=user.id)
    generation = await query.first()
    if generation is None:
        raise NotFound("Generation not found.")
    return generation
