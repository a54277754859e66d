"""A generation's outputs: their shape, how they are read, and the one way they are written
(fixed SQL: one multi-row INSERT instead of a bulk_create, whose model objects, executemany
and prepared statement cost more than the usual one row)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from models.generation import GenerationOutput
from services.sql import dialect_sql


@dataclass(frozen=True)
class StoredOutput:
    index: int
    storage_key: str
    content_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None
    text: str | None = None


# The columns every output insert writes, in this order; `output_values` gives the values
# of one output in the same order (after the generation's id, before `created_at`).
OUTPUT_COLUMNS = (
    'generation_id, "index", storage_key, content_type, size_bytes, width, height, "text", '
    "created_at"
)
_INSERT = f"INSERT INTO generation_outputs ({OUTPUT_COLUMNS}) VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"


def output_values(output: StoredOutput) -> list[Any]:
    """One output's values between its generation id and its creation time."""
    o = output
    return [o.index, o.storage_key, o.content_type, o.size_bytes, o.width, o.height, o.text]


async def insert_outputs(generation_id: uuid.UUID, outputs: list[StoredOutput]) -> None:
    """Store these outputs of the generation (inside the caller's transaction)."""
    if not outputs:
        return
    connection = connections.get("default")
    now = GenerationOutput._meta.fields_map["created_at"].to_db_value(
        datetime.now(UTC), GenerationOutput
    )
    params: list[Any] = []
    for output in outputs:
        params += [str(generation_id), *output_values(output), now]
    await connection.execute_query(
        dialect_sql(_INSERT + ", ".join([_ROW] * len(outputs)), connection), params
    )


async def delete_outputs(generation_id: uuid.UUID) -> None:
    connection = connections.get("default")
    await connection.execute_query(
        dialect_sql("DELETE FROM generation_outputs WHERE generation_id = ?", connection),
        [str(generation_id)],
    )


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
