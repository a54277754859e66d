"""The reads behind every generations screen: a user's page of generations and their outputs,
in fixed SQL.

Both run for every page view. Building them with the ORM's query builder cost more CPU than
running them, and so did turning the rows into models (Tortoise's `_init_from_db` and its
field converters were ~10% of the API's CPU during the read benchmark, bench/RESULTS.md), so
the SQL is written once per shape here and each row becomes a `ListedGeneration`: the same
attributes and values a model read by the ORM has, without the model machinery.

On PostgreSQL (asyncpg) a page and the outputs of its generations are one statement (each
row carries its outputs as a JSON array), read through Tortoise's own pool or transaction
connection. Other backends (SQLite in embedded mode) run the page and then one statement for
its outputs, converting values with the model's own field converters.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from tortoise import connections
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.timezone import get_default_timezone, get_use_tz

from models.generation import (
    Generation,
    GenerationKind,
    GenerationStatus,
    HoldState,
    WorkflowPhase,
)
from models.user import User
from services.generations.outputs import StoredOutput
from services.generations.provider_job import ProviderJob
from services.pagination import Page, decode_cursor, encode_cursor
from services.sql import dialect_sql, numbered

_OUTPUTS = (
    'SELECT generation_id, "index", storage_key, content_type, size_bytes, width, height, text '
    'FROM generation_outputs WHERE generation_id IN ({ids}) ORDER BY "index"'
)
# The outputs of each row of a page, in output order, as a JSON array of
# [index, storage_key, content_type, size_bytes, width, height, text] (NULL when none).
_OUTPUTS_OF_ROW = (
    '(SELECT json_agg(json_build_array(o."index", o.storage_key, o.content_type, o.size_bytes, '
    'o.width, o.height, o.text) ORDER BY o."index") '
    "FROM generation_outputs o WHERE o.generation_id = generations.id)"
)


class ListedGeneration(NamedTuple):
    """A row of `generations` as a page lists it: every column as the ORM's model would hold
    it (enums, aware datetimes, decoded JSON), and `outputs` when the page read them too
    (None when it did not). A tuple: built from the row's values in one step."""

    id: uuid.UUID
    user_id: uuid.UUID
    parent_id: uuid.UUID | None
    kind: GenerationKind
    status: GenerationStatus
    progress: float
    stage: str | None
    model: str
    preset: str | None
    provider: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]
    phase: WorkflowPhase | None
    cost: int
    hold: HoldState | None
    attempts: int
    error_code: str | None
    error_message: str | None
    version: int
    request_id: str | None
    provider_job: ProviderJob | None
    provider_job_id: str | None
    cache_key: str | None
    idempotency_key: str | None
    request_hash: str | None
    created_at: datetime
    queued_at: datetime
    started_at: datetime | None
    lease_expires_ms: int | None
    completed_at: datetime | None
    outputs: list[StoredOutput] | None


# Every column of `generations`, in the order ListedGeneration holds them.
COLUMNS = ListedGeneration._fields[:-1]


async def list_generations(
    user: User,
    *,
    first: int,
    after: str | None,
    statuses: list[GenerationStatus] | None = None,
    kind: GenerationKind | None = None,
    with_outputs: bool = False,
) -> Page[ListedGeneration]:
    """The user's generations, newest first, `first` of them after the cursor `after`; with
    each one's outputs when `with_outputs` (else their `outputs` is None)."""
    params: list[Any] = [user.id]
    if statuses:
        params.extend(s.value for s in statuses)
    if kind:
        params.append(kind.value)
    if after:
        created_at, last_id = decode_cursor(after)
        params.extend([created_at, created_at, last_id])
    params.append(first + 1)
    connection = connections.get("default")
    fast = isinstance(connection, AsyncpgDBClient)
    sql = _page_sql(
        len(statuses or ()), kind is not None, after is not None, with_outputs and fast,
        connection.capabilities.dialect,
    )  # fmt: skip
    items: list[ListedGeneration]
    if fast:
        async with connection.acquire_connection() as conn:
            records = await conn.fetch(sql, *params)
        # Tortoise holds timestamps in its time zone; asyncpg's are aware UTC already, the
        # same instants printed the same way, so only another zone needs converting.
        zone = get_default_timezone() if get_use_tz() else None
        convert = getattr(zone, "key", None) != "UTC"  # a ZoneInfo (not always one instance)
        items = [_from_record(r, with_outputs, convert, zone) for r in records[:first]]
    else:
        params[0] = str(user.id)
        records = await connection.execute_query_dict(sql, params)
        rows = records[:first]
        grouped: list[list[StoredOutput] | None] = [None] * len(rows)
        if with_outputs:
            grouped[:] = await outputs_by_generation([_uuid(r["id"]) for r in rows])
        items = [_from_dict(r, o) for r, o in zip(rows, grouped, strict=True)]
    return Page(items=items, has_next=len(records) > first, cursor_of=_cursor)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _cursor(generation: ListedGeneration) -> str:
    return encode_cursor(generation.created_at, str(generation.id))


@lru_cache(maxsize=64)
def _page_sql(
    statuses: int, kind: bool, after: bool, with_outputs: bool, dialect: str
) -> str:  # fmt: skip
    """The page's SQL for one shape of filters (placeholders in the order list_generations
    gives its parameters)."""
    where = ["user_id = ?"]
    if statuses:
        where.append(f"status IN ({', '.join('?' * statuses)})")
    if kind:
        where.append("kind = ?")
    if after:
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
    columns = ", ".join(COLUMNS)
    if with_outputs:
        columns += f", {_OUTPUTS_OF_ROW} AS outputs"
    sql = (
        f"SELECT {columns} FROM generations WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    return numbered(sql) if dialect == "postgres" else sql


_KINDS = {k.value: k for k in GenerationKind}
_STATUSES = {s.value: s for s in GenerationStatus}
_HOLDS = {h.value: h for h in HoldState}
_PHASES = {p.value: p for p in WorkflowPhase}
# Positions in COLUMNS of the values asyncpg does not return as the model holds them.
_KIND, _STATUS, _PARAMS, _PHASE, _HOLD, _PROVIDER_JOB = (
    COLUMNS.index(n) for n in ("kind", "status", "params", "phase", "hold", "provider_job")
)
_TIMES = tuple(COLUMNS.index(n) for n in ("created_at", "queued_at", "started_at", "completed_at"))


def _from_record(
    record: Any, with_outputs: bool, convert_times: bool, zone: tzinfo | None
) -> ListedGeneration:
    """A row from asyncpg, converted as the model's fields convert it: enums from their
    values, JSON decoded (orjson, the JSONField decoder), timestamps in Tortoise's zone."""
    values = list(record.values())
    values[_KIND] = _KINDS[values[_KIND]]
    values[_STATUS] = _STATUSES[values[_STATUS]]
    hold = values[_HOLD]
    if hold is not None:
        values[_HOLD] = _HOLDS[hold]
    values[_PARAMS] = orjson.loads(values[_PARAMS])
    phase = values[_PHASE]
    if phase is not None:
        values[_PHASE] = _PHASES[phase]
    job = values[_PROVIDER_JOB]
    if job is not None:
        values[_PROVIDER_JOB] = _provider_job(orjson.loads(job))
    if convert_times:
        for i in _TIMES:
            when = values[i]
            if when is not None:
                values[i] = when.astimezone(zone) if zone is not None else when.replace(tzinfo=None)
    if with_outputs:
        encoded = values[-1]
        values[-1] = [StoredOutput(*o) for o in orjson.loads(encoded)] if encoded else []
    else:
        values.append(None)
    return ListedGeneration._make(values)


def _from_dict(row: dict[str, Any], outputs: list[StoredOutput] | None) -> ListedGeneration:
    """A row from any other backend, through the model's own field converters (looked up
    per call: the foreign keys' `_id` fields exist only once Tortoise is initialised)."""
    fields = Generation._meta.fields_map
    values = [fields[c].to_python_value(row[c]) for c in COLUMNS]
    values[_PROVIDER_JOB] = _provider_job(values[_PROVIDER_JOB])
    return ListedGeneration._make([*values, outputs])


def _provider_job(decoded: dict[str, Any] | None) -> ProviderJob | None:
    """The decoded column as its shape (services.generations.provider_job)."""
    return ProviderJob.from_json(decoded) if decoded else None


async def outputs_by_generation(ids: Sequence[uuid.UUID]) -> list[list[StoredOutput]]:
    """The outputs of each generation in `ids`, in output order (DataLoader shape)."""
    grouped: dict[uuid.UUID, list[StoredOutput]] = defaultdict(list)
    if ids:
        connection = connections.get("default")
        sql = dialect_sql(_OUTPUTS.format(ids=", ".join("?" * len(ids))), connection)
        for row in await connection.execute_query_dict(sql, [str(i) for i in ids]):
            owner = row["generation_id"]
            grouped[owner if isinstance(owner, uuid.UUID) else uuid.UUID(owner)].append(
                StoredOutput(
                    row["index"],
                    row["storage_key"],
                    row["content_type"],
                    row["size_bytes"],
                    row["width"],
                    row["height"],
                    row["text"],
                )
            )
    return [grouped[i] for i in ids]
