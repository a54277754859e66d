"""Workflows: parent generations whose parts are generations of their own (multi-view
product renders; storyboards next). `base.Workflow` is all the lifecycle knows of them;
each workflow is a module beside it, registered here by the kind of its parent.

The lifecycle (services.generations, services.runner, services.sweeper) calls only the
functions of this module: `of` for a generation's workflow and its hooks, `advance` when a
part ended (actor `workflow.advance`), `nudge` from the sweeper. A generation that is no
workflow gets the plain behaviour from each (`prompt_of`, `round_of`, `progress_of`)."""

from __future__ import annotations

import uuid

from models.generation import Generation, GenerationKind
from services.workflows import multi_view
from services.workflows.base import Workflow
from services.workflows.multi_view import approve, request_changes, start_views

__all__ = [
    "Workflow",
    "advance",
    "approve",
    "nudge",
    "of",
    "progress_of",
    "prompt_of",
    "request_changes",
    "round_of",
    "start_views",
    "waits_on_parts",
]

WORKFLOWS: dict[GenerationKind, Workflow] = {
    workflow.kind: workflow for workflow in (multi_view.MultiView(),)
}


def of(generation: Generation) -> Workflow | None:
    """The workflow a generation is the parent of; None for any other generation."""
    return WORKFLOWS.get(generation.kind)


def prompt_of(generation: Generation) -> str:
    """What a generation's own provider run is asked for."""
    workflow = of(generation)
    return workflow.prompt(generation) if workflow else generation.prompt


def round_of(generation: Generation) -> int:
    """How many times a generation's own run was redone within its attempt."""
    workflow = of(generation)
    return workflow.round(generation) if workflow else 0


def progress_of(generation: Generation, fraction: float, stage: str) -> tuple[float, str]:
    """The progress and stage to show while a generation's own provider run is at
    `fraction` of its work: for a workflow, its share of the whole run."""
    workflow = of(generation)
    return workflow.progress(generation, fraction, stage) if workflow else (fraction, stage)


def waits_on_parts(generation: Generation) -> bool:
    workflow = of(generation)
    return workflow is not None and workflow.waits_on_parts(generation)


async def advance(parent_id: uuid.UUID, attempt: int) -> None:
    """A part of `parent_id`'s attempt `attempt` ended (actor `workflow.advance`, sent after
    commit by the part's end and again by the sweeper): its workflow decides what is next."""
    parent = await Generation.get_or_none(id=parent_id)
    if parent is None or parent.attempts != attempt:
        return
    workflow = of(parent)
    if workflow is not None:
        await workflow.advance(parent)


async def nudge() -> None:
    """Sweeper: every workflow sends again what may have been lost."""
    for workflow in WORKFLOWS.values():
        await workflow.nudge()
