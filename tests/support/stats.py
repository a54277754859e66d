"""Resetting the operations counters between tests."""

from __future__ import annotations

from models.error_event import ErrorEvent, ErrorHourlyCount
from models.stats import GenerationHourlyCount
from services import error_events


async def clear_counters() -> None:
    """Stats read whole tables; the session-wide database holds other tests' rows."""
    await error_events.flush()
    await ErrorHourlyCount.all().delete()
    await ErrorEvent.all().delete()
    await GenerationHourlyCount.all().delete()
