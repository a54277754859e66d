"""What the generation lifecycle asks of a workflow, and nothing else.

A workflow is a parent generation whose parts are generations of their own. The lifecycle
(creation, the runner, the sweeper, completion and failure) runs parents and parts like any
generation and hands a workflow only these moments: what the parent's own provider run is
asked for, how far the whole run is, that the parent's own run is drawn, that a part ended,
and whether the parent waits on its parts. A second workflow (storyboards) implements this
protocol beside multi-view, and the lifecycle does not change."""

from __future__ import annotations

from typing import Protocol

from models.generation import Generation, GenerationKind
from services.generations import StoredOutput


class Workflow(Protocol):
    kind: GenerationKind

    def prompt(self, parent: Generation) -> str:
        """What the parent's own provider run is asked to draw at its current step."""
        ...

    def round(self, parent: Generation) -> int:
        """How many times the parent's own run was redone in this attempt: outputs of each
        round are stored under keys of their own."""
        ...

    def progress(self, parent: Generation, fraction: float, stage: str) -> tuple[float, str]:
        """The whole run's progress and stage while the parent's own provider run is at
        `fraction` (0..1) of its work, reporting `stage`. Never below what the parent has
        already shown in this attempt."""
        ...

    async def drawn(
        self, parent: Generation, outputs: list[StoredOutput], provider: str
    ) -> Generation | None:
        """The parent's own provider run (of `parent.attempts`, as the runner read it) has
        these outputs: the workflow goes on instead of completing. None when that attempt is
        no longer live."""
        ...

    async def advance(self, parent: Generation) -> None:
        """One of the parent's parts ended (at least once: may be sent again)."""
        ...

    def waits_on_parts(self, parent: Generation) -> bool:
        """The parent is PROCESSING only because its parts are: no time limit of its own."""
        ...

    async def nudge(self) -> None:
        """Sweeper: send again the next step of parents whose message may have been lost."""
        ...
