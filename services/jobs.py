"""Sending background jobs. The tasks layer plugs in the real sender at boot, so services
never import the actors that call them. Jobs that belong to a state change leave only after
its transaction commits; follow-ups of a running job (poll again, try again when a provider
has capacity) are sent at once with a delay."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from models.generation import Generation
from services.events import send_after_commit

log = logging.getLogger(__name__)

# (actor name, arguments, delay in milliseconds or None)
JobSender = Callable[[str, tuple[str, ...], int | None], Awaitable[None]]
RUN = "generation.run"
POLL = "generation.poll"
RESUME = "generation.resume"
# Stop a provider job whose generation ended (cancelled, or failed by a time-out) while it
# ran: sent after commit by that change, so the provider hears of it at once rather than at
# the next poll (a minute away when webhooks deliver results).
ABANDON = "generation.abandon"
# `generation.run` of priority (premium) accounts: the same work on its own Dramatiq queue,
# so dedicated workers (`dramatiq tasks --queues generations-priority`) serve them first.
RUN_PRIORITY = "generation.run_priority"
PRIORITY_QUEUE = "generations-priority"
VIEWS = "workflow.views"
ADVANCE = "workflow.advance"

# Whether the broker lost the messages it held since the last look (Redis restarted empty):
# the tasks layer plugs in the check, as it does the sender.
BrokerCheck = Callable[[], Awaitable[bool]]


class Resends(Protocol):
    """Where the sweeper's re-sends of `generation.run` are marked until a worker takes them
    off the queue (the tasks layer keeps the marks beside the messages, in Redis, so that
    they are lost together)."""

    async def mark(self, generation_ids: list[str]) -> None: ...

    async def waiting(self, generation_ids: list[str]) -> set[str]: ...

    async def picked_up(self, generation_id: str) -> None: ...


# The argument that tells a re-sent `generation.run` from the first one.
RESENT = "resent"
_sender: JobSender | None = None
_broker_check: BrokerCheck | None = None
_resends: Resends | None = None


def set_sender(sender: JobSender | None) -> None:
    global _sender
    _sender = sender


def set_resends(resends: Resends | None) -> None:
    global _resends
    _resends = resends


async def resends_waiting(generation_ids: list[str]) -> set[str]:
    """Those of `generation_ids` whose last re-send is still waiting for a worker: not sent
    again (re-sends stay proportional to the work that was lost, whatever the backlog). When
    nothing can tell (no Redis, or it does not answer), none."""
    if _resends is None or not generation_ids:
        return set()
    try:
        return await _resends.waiting(generation_ids)
    except Exception:
        log.warning("could not look up waiting re-sends", exc_info=True)
        return set()


async def mark_resent(generation_ids: list[str]) -> None:
    if _resends is not None and generation_ids:
        try:
            await _resends.mark(generation_ids)
        except Exception:
            log.warning("could not mark re-sends", exc_info=True)


async def resend_picked_up(generation_id: str) -> None:
    """A worker took a re-sent `generation.run` off the queue."""
    if _resends is not None:
        try:
            await _resends.picked_up(generation_id)
        except Exception:
            log.warning("could not clear the re-send mark of %s", generation_id, exc_info=True)


def set_broker_check(check: BrokerCheck | None) -> None:
    global _broker_check
    _broker_check = check


async def broker_forgot() -> bool:
    """True once after the broker lost its queued messages (the sweeper then sends every
    queued generation again); False when it kept them, or cannot tell (no Redis)."""
    if _broker_check is None:
        return False
    try:
        return await _broker_check()
    except Exception:
        log.warning("could not ask the broker whether it kept its messages", exc_info=True)
        return False


async def send(
    actor: str, *args: str, delay_seconds: float | None = None, priority: bool | None = None
) -> None:
    """`priority` picks the queue of a `generation.run`; callers that know the owner say so,
    the others (sweeper re-sends, workflow views) have it looked up."""
    if _sender is None:
        raise RuntimeError("no job sender configured")
    delay = int(delay_seconds * 1000) if delay_seconds else None
    await _sender(await actor_for(actor, args, priority), args, delay)


async def actor_for(actor: str, args: tuple[str, ...], priority: bool | None) -> str:
    """The actor that runs it: a `generation.run` of a priority account goes to its queue."""
    if actor == RUN and args:
        if priority is None:
            priority = await _owner_has_priority(args[0])
        if priority:
            return RUN_PRIORITY
    return actor


async def _owner_has_priority(generation_id: str) -> bool:
    try:
        return await Generation.filter(id=generation_id, user__priority=True).exists()
    except Exception:
        # Never lose a job over the queue choice: the normal queue runs it too.
        log.warning("priority lookup failed for %s", generation_id, exc_info=True)
        return False


@dataclass(frozen=True, slots=True)
class Job:
    """A job that leaves after commit (services.events), with the messages of its change."""

    actor: str
    args: tuple[str, ...]
    priority: bool | None = None

    async def deliver(self) -> None:
        await send(self.actor, *self.args, priority=self.priority)


def enqueue_after_commit(
    generation_id: uuid.UUID,
    *,
    actor: str = RUN,
    args: tuple[str, ...] = (),
    priority: bool | None = None,
) -> None:
    """Send `actor` (by default `generation.run`) for the generation once the enclosing
    transaction commits; the sweeper re-sends work whose message was lost."""
    send_after_commit(Job(actor, (str(generation_id), *args), priority))
