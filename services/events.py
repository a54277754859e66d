"""Publishing state changes, always after the transaction that made them commits."""

from __future__ import annotations

from typing import Any

from realtime.hub import get_hub
from services.unit_of_work import after_commit


def publish_after_commit(channel: str, message: dict[str, Any]) -> None:
    async def publish() -> None:
        await get_hub().publish(channel, message)

    after_commit(publish)
