"""Publishing state changes, always after the transaction that made them commits."""

from __future__ import annotations

from typing import Any

from realtime.hub import get_hub
from services.unit_of_work import after_commit_batched

Publication = tuple[str, dict[str, Any]]


def publish_after_commit(channel: str, message: dict[str, Any]) -> None:
    """The messages of one change (a generation's two channels, the owner's balance) leave
    together, in order, after commit."""
    after_commit_batched(_publish_all, (channel, message))


async def _publish_all(publications: list[Publication]) -> None:
    # A failure is logged by the after-commit runner, like any effect's.
    hub = get_hub()
    if len(publications) == 1:
        await hub.publish(*publications[0])
    else:
        await hub.publish_many(publications)
