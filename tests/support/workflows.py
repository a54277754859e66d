"""Driving a workflow step by step the way the workers do it, in-process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from models.generation import Generation, GenerationKind
from realtime.hub import Hub
from realtime.mailbox import Message
from services import generations, jobs, runner, workflows
from services.catalogue import Catalogue, load_catalogue
from services.generations import NewGeneration
from services.provider_routing.deps import ProviderDeps

CATALOGUE = load_catalogue()


async def run_pending(backend, catalogue: Catalogue, deps: ProviderDeps) -> None:
    """Deliver the jobs the services sent, as the workers would, until none is left."""
    while backend.sent:
        actor, args, _ = backend.sent.pop(0)
        if actor == jobs.RUN:
            await runner.run_generation(uuid.UUID(args[0]), catalogue, deps, backend.store)
        elif actor == jobs.VIEWS:
            await workflows.start_views(uuid.UUID(args[0]), int(args[1]), catalogue, backend.store)
        elif actor == jobs.ADVANCE:
            await workflows.advance(uuid.UUID(args[0]), int(args[1]))


async def new_workflow(user, catalogue: Catalogue = CATALOGUE, **fields) -> Generation:
    """A multi-view workflow of a product photo, small enough to draw at once."""
    return await generations.create_generation(
        user,
        NewGeneration(
            prompt="a brown leather backpack with brass buckles",
            kind=GenerationKind.MULTI_VIEW,
            width=96,
            height=96,
            seed=3,
            **fields,
        ),
        catalogue,
    )


async def awaiting_approval(user, backend, deps: ProviderDeps) -> Generation:
    """A new workflow whose front view is drawn: AWAITING_APPROVAL."""
    parent = await new_workflow(user)
    await run_pending(backend, CATALOGUE, deps)
    return parent


@contextmanager
def every_message(hub: Hub, channel: str) -> Iterator[list[Message]]:
    """Every message published on `channel` meanwhile, in order (a subscriber's mailbox
    keeps only the newest, so it cannot tell whether an older state went backwards)."""
    seen: list[Message] = []
    publish = hub.publish

    async def recording(to: str, message: Message) -> None:
        if to == channel:
            seen.append(message)
        await publish(to, message)

    hub.publish = recording  # type: ignore[method-assign, assignment]
    try:
        yield seen
    finally:
        del hub.publish
