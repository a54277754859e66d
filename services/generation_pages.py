"""The reads behind every generations screen: a user's page of generations and their outputs,
in fixed SQL.

Both run for every page view. Building them with the ORM's query builder cost more CPU than
running them (bench/RESULTS.md, read), so the SQL is written once per shape here and only the
rows are turned into models.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tortoise import connections

from models.generation import Generation, GenerationKind, GenerationStatus
from models.user import User
from services.generations import StoredOutput
from services.pagination import Page, decode_cursor, encode_cursor
from services.sql import dialect_sql

_OUTPUTS = (
    'SELECT generation_id, "index", storage_key, content_type, size_bytes, width, height, text '
    'FROM generation_outputs WHERE generation_id IN ({ids}) ORDER BY "index"'
)


async def list_generations(
    user: User,
    *,
    first: int,
    after: str | None,
    statuses: list[GenerationStatus] | None = None,
    kind: GenerationKind | None = None,
) -> Page[Generation]:
    """The user's generations, newest first, `first` of them after the cursor `after`."""
    where = ["user_id = ?"]
    params: list[Any] = [str(user.id)]
    if statuses:
        where.append(f"status IN ({', '.join('?' * len(statuses))})")
        params.extend(s.value for s in statuses)
    if kind:
        where.append("kind = ?")
        params.append(kind.value)
    if after:
        created_at, last_id = decode_cursor(after)
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params.extend([created_at, created_at, last_id])
    params.append(first + 1)
    connection = connections.get("default")
    sql = (
        f"SELECT * FROM generations WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT ?"
    )
    rows = await connection.execute_query_dict(dialect_sql(sql, connection), params)
    items = [Generation._init_from_db(**row) for row in rows]
    return Page(
        items=items[:first],
        has_next=len(items) > first,
        cursor_of=lambda g: encode_cursor(g.created_at, str(g.id)),
    )


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
