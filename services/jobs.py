"""Sending background jobs. The tasks layer plugs in the real sender at boot, so services
never import the actors that call them. Jobs that belong to a state change leave only after
its transaction commits; follow-ups of a running job (poll again, try again when a provider
has capacity) are sent at once with a delay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from services.unit_of_work import after_commit

# (actor name, arguments, delay in milliseconds or None)
JobSender = Callable[[str, tuple[str, ...], int | None], None]
RUN = "generation.run"
POLL = "generation.poll"
RESUME = "generation.resume"
VIEWS = "workflow.views"
ADVANCE = "workflow.advance"

_sender: JobSender | None = None


def set_sender(sender: JobSender | None) -> None:
    global _sender
    _sender = sender


async def send(actor: str, *args: str, delay_seconds: float | None = None) -> None:
    if _sender is None:
        raise RuntimeError("no job sender configured")
    delay = int(delay_seconds * 1000) if delay_seconds else None
    # Dramatiq's send is blocking I/O on the broker; keep the event loop free.
    await asyncio.to_thread(_sender, actor, args, delay)


def enqueue_after_commit(
    generation_id: uuid.UUID, *, actor: str = RUN, args: tuple[str, ...] = ()
) -> None:
    """Send `actor` (by default `generation.run`) for the generation once the enclosing
    transaction commits; the sweeper re-sends work whose message was lost."""

    async def deliver() -> None:
        await send(actor, str(generation_id), *args)

    after_commit(deliver)
