"""Reading the error events a test caused."""

from __future__ import annotations

import uuid

from models.error_event import ErrorEvent
from services import error_events


async def events_of(generation_id: uuid.UUID) -> list[ErrorEvent]:
    """The error event groups whose latest occurrence is this generation's, once every
    recording still being written has finished."""
    await error_events.flush()
    return [
        event
        for event in await ErrorEvent.all()
        if ((event.last_occurrence or {}).get("metadata") or {}).get("generationId")
        == str(generation_id)
    ]
