"""Opaque cursors for newest-first connections: base64 of (created_at, id)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from services.errors import BadUserInput

T = TypeVar("T")
MAX_PAGE = 50


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next: bool
    cursor_of: Callable[[T], str]


def check_first(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be 1 to {MAX_PAGE}.", field="first")
    return first


def encode_cursor(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor is client input: anything but a timestamp and a row id of ours (a 64-bit
    integer or a UUID) is BAD_USER_INPUT, never an error from the database."""
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        when = datetime.fromisoformat(created_at)
        if not (row_id.isascii() and row_id.isdigit() and len(row_id) <= 18):
            row_id = str(uuid.UUID(row_id))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadUserInput("Invalid cursor.", field="after") from error
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), row_id


def check_uuid_cursor(cursor: str) -> None:
    """For connections of rows with UUID ids: a cursor naming an integer id is not ours."""
    _, row_id = decode_cursor(cursor)
    if row_id.isdigit():
        raise BadUserInput("Invalid cursor.", field="after")


M = TypeVar("M", bound=Model)


async def newest_first_by_id(query: QuerySet[M], *, first: int, after: str | None) -> Page[M]:
    """Rows with growing integer ids, newest first; the cursor carries the id."""
    if after:
        _, last_id = decode_cursor(after)
        if not last_id.isdigit():
            raise BadUserInput("Invalid cursor.", field="after")
        query = query.filter(id__lt=int(last_id))
    rows = await query.order_by("-id").limit(first + 1)
    return Page(rows[:first], len(rows) > first, _id_cursor)


def _id_cursor(row: Any) -> str:
    return encode_cursor(row.created_at, str(row.id))
