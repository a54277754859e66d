"""Ids as clients send them: an id that cannot be one of ours names nothing (NOT_FOUND, like
any id the caller cannot see), and never reaches the database."""

from __future__ import annotations

import uuid

from services.errors import BadUserInput, NotFound


def parse_id(value: str, *, field: str = "id", missing_is_not_found: bool = True) -> uuid.UUID:
    """A malformed id names nothing: NOT_FOUND like any other id the caller cannot see."""
    try:
        return uuid.UUID(value)
    except ValueError as error:
        if missing_is_not_found:
            raise NotFound("Not found.") from error
        raise BadUserInput("Malformed id.", field=field) from error


def parse_int_id(value: str, *, message: str = "Not found.") -> int:
    """An id of a table with 64-bit integer keys (error events): at most 18 digits."""
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise NotFound(message)
    return int(value)
