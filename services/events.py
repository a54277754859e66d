"""Publishing state changes, always after the transaction that made them commits."""

from __future__ import annotations

import logging
from typing import Any

from realtime.hub import get_hub
from services.unit_of_work import after_commit_batched

log = logging.getLogger(__name__)
Publication = tuple[str, dict[str, Any]]


def publish_after_commit(channel: str, message: dict[str, Any]) -> None:
    """The messages of one change (a generation's two channels, the owner's balance) leave
    together, in order, after commit."""
    after_commit_batched(_publish_all, (channel, message))


async def _publish_all(publications: list[Publication]) -> None:
    hub = get_hub()
    # A hub that can send several messages in one round trip (a Redis pipeline) does.
    publish_many = getattr(hub, "publish_many", None)
    if publish_many is not None and len(publications) > 1:
        await publish_many(publications)
        return
    for channel, message in publications:
        try:
            await hub.publish(channel, message)
        except Exception:
            # As separate effects: one lost message does not hold back the others (a lost
            # publish is made good by the next change or the subscriber's initial read).
            log.exception("publish to %s failed", channel)
