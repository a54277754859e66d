"""Raw SQL for the hot paths the ORM makes slow (building a query costs more than running
it), written once with `?` placeholders for both backends."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient


def dialect_sql(text: str, connection: BaseDBAsyncClient) -> str:
    """Raw SQL is written with `?` placeholders; asyncpg wants $1, $2, ..."""
    return numbered(text) if connection.capabilities.dialect == "postgres" else text


def numbered(text: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ..."""
    parts = text.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], start=1)) + parts[-1]
