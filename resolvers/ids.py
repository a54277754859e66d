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
