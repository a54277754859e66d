"""What a committed change sends: its pub/sub messages and its background jobs, after the
transaction that made it commits (dropped if it rolls back), in the order they were
registered. Consecutive ones leave as one batch, through the process's transport when it has
one (the tasks layer sets one that sends a batch in one Redis round trip), else messages
through the hub and jobs one by one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from realtime.hub import get_hub
from services.unit_of_work import after_commit_batched

log = logging.getLogger(__name__)

Publication = tuple[str, dict[str, Any]]


class Deliverable(Protocol):
    """Something other than a message that leaves after commit (a job)."""

    async def deliver(self) -> None: ...


Outgoing = Publication | Deliverable
Transport = Callable[[list[Outgoing]], Awaitable[None]]
_transport: Transport | None = None


def set_transport(transport: Transport | None) -> None:
    global _transport
    _transport = transport


def publish_after_commit(channel: str, message: dict[str, Any]) -> None:
    """The messages of one change (a generation's two channels, the owner's balance) leave
    together, in order, after commit."""
    publication: Outgoing = (channel, message)
    after_commit_batched(_send_all, publication)


def send_after_commit(item: Deliverable) -> None:
    outgoing: Outgoing = item
    after_commit_batched(_send_all, outgoing)


async def _send_all(items: list[Outgoing]) -> None:
    if _transport is not None:
        await _transport(items)
    else:
        await send_separately(items)


async def send_separately(items: list[Outgoing]) -> None:
    """Consecutive messages in one publish_many, each job on its own; a failure is logged and
    skips none of the others. A message is lost only when Redis is unreachable, and then every
    API process's pub/sub connection is lost too: when it comes back, its hub re-reads from the
    database the state of what its subscribers follow (realtime/catch_up.py), so a final state
    reaches them although no later change will follow it. A lost job is sent again by the
    sweeper."""
    hub = get_hub()
    publications: list[Publication] = []
    for item in [*items, None]:
        if isinstance(item, tuple):
            publications.append(item)
            continue
        if publications:
            try:
                if len(publications) == 1:
                    await hub.publish(*publications[0])
                else:
                    await hub.publish_many(publications)
            except Exception:
                log.exception("publishing %d message(s) failed", len(publications))
            publications = []
        if item is not None:
            try:
                await item.deliver()
            except Exception:
                log.exception("after-commit delivery failed")
