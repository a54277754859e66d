"""The `generations` table. Every state change is one conditional UPDATE ... RETURNING that
bumps `version` (so a redelivered message or a racing request changes nothing twice),
guarded by a `Guard` and written as fixed SQL: building a Tortoise query cost more CPU than
running it, and one guard style means one place to read what a change requires."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from models.generation import Generation, GenerationStatus, WorkflowPhase
from models.user import Role, User
from services import stats
from services.errors import NotFound
from services.generations.messages import announce
from services.generations.outputs import StoredOutput, delete_outputs, insert_outputs, outputs_of
from services.sql import dialect_sql
from services.unit_of_work import atomic, effects_only

IDEMPOTENCY_WINDOW = timedelta(hours=24)
CANCELABLE = (
    GenerationStatus.QUEUED,
    GenerationStatus.PROCESSING,
    GenerationStatus.AWAITING_APPROVAL,
)
RETRYABLE = (GenerationStatus.FAILED, GenerationStatus.CANCELED)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Guard:
    """The condition of a state change: the status is one of `statuses`, and the attempt,
    progress and workflow phase are as given when set."""

    statuses: tuple[GenerationStatus, ...]
    attempt: int | None = None
    # progress <= this: progress never goes backwards within an attempt
    max_progress: float | None = None
    phase: WorkflowPhase | None = None


# A workflow's view has a parent: its end advances its workflow instead of telling its owner.
NOT_A_VIEW_SQL = "parent_id IS NULL"


def is_view(generation: Generation) -> bool:
    return generation.parent_id is not None


def live(attempt: int | None, *, max_progress: float | None = None) -> Guard:
    """PROCESSING, and still the worker's attempt: a worker of a cancelled attempt that is
    still running must not touch the attempt that a retry started."""
    return Guard((GenerationStatus.PROCESSING,), attempt=attempt, max_progress=max_progress)


async def transition(
    generation_id: uuid.UUID,
    guard: Guard,
    *,
    publish: bool = True,
    observe: bool = True,
    **changes: Any,
) -> Generation | None:
    """One conditional UPDATE ... RETURNING that bumps `version`; publishes the new row (after
    commit) only if it matched. `changes` are plain values (a change computed from the row,
    like attempts + 1, is computed from the row read before and guarded by what it read).
    A change that writes nothing else runs as that one statement, without BEGIN/COMMIT.
    `observe=False` leaves the stats of a status change to the caller
    (`stats.observe_transition`), which runs them last in its transaction: the hourly counter
    row is shared by every finishing generation, so its lock is taken just before commit."""
    status = changes.get("status")
    counted = observe and status is not None and GenerationStatus(status).is_final
    async with atomic() if counted else effects_only():
        generation = await _set_returning(generation_id, guard, changes)
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
        guard.phase is not None,
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
    """`Generation.filter(guard).update(version=version + 1, **changes)`, returning the updated
    row in the same round trip (PostgreSQL and SQLite >= 3.35 both know RETURNING)."""
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


def had_outputs(generation: Generation) -> bool:
    """True unless the statement that returned the row saw it without outputs."""
    return bool(getattr(generation, _HAD_OUTPUTS, True))


async def matches(generation_id: uuid.UUID, guard: Guard) -> bool:
    connection = connections.get("default")
    sql = dialect_sql(f"SELECT 1 FROM generations WHERE {_guard_where(guard)}", connection)
    return bool(await connection.execute_query_dict(sql, _guard_params(generation_id, guard)))


def _guard_where(guard: Guard) -> str:
    where = f"id = ? AND status IN ({', '.join('?' * len(guard.statuses))})"
    if guard.attempt is not None:
        where += " AND attempts = ?"
    if guard.max_progress is not None:
        where += " AND progress <= ?"
    if guard.phase is not None:
        where += " AND phase = ?"
    return where


def _guard_params(generation_id: uuid.UUID, guard: Guard) -> list[Any]:
    """The parameters of `_guard_where(guard)`, in its order."""
    params: list[Any] = [str(generation_id), *(s.value for s in guard.statuses)]
    if guard.attempt is not None:
        params.append(guard.attempt)
    if guard.max_progress is not None:
        params.append(guard.max_progress)
    if guard.phase is not None:
        params.append(guard.phase.value)
    return params


async def replace_outputs(
    generation: Generation, outputs: list[StoredOutput], *, had_outputs: bool = True
) -> None:
    """Store these as the generation's outputs (inside the caller's transaction) and
    announce its state with them. `had_outputs=False` (known from the statement that moved
    it) skips deleting what is not there."""
    if had_outputs:
        await delete_outputs(generation.id)
    await insert_outputs(generation.id, outputs)
    announce(generation, outputs)


def row_and_extra(row: dict[str, Any]) -> tuple[Generation, dict[str, Any]]:
    """A one-statement change's result: the generation's row, and the statement's own
    `kiln_`-prefixed columns (the account's move, counts)."""
    columns = dict(row)
    extra = {k: columns.pop(k) for k in row if k.startswith("kiln_")}
    return Generation._init_from_db(**columns), extra


async def claim_job(generation_id: uuid.UUID, job_id: str) -> bool:
    """Take the job's result for processing. Exactly one of the poller and the webhook wins,
    so a result delivered both ways is handled once. Fixed SQL: every finished provider job
    passes here."""
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


async def prune_idempotency_keys() -> int:
    """Sweeper: keys older than the window are forgotten, so they can be used again."""
    return await Generation.filter(
        idempotency_key__isnull=False, created_at__lt=now() - IDEMPOTENCY_WINDOW
    ).update(idempotency_key=None)
