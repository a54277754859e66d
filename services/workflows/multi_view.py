"""The MULTI_VIEW workflow (product design).

1. The parent generation (kind MULTI_VIEW) draws the front view (its output 0), then waits in
   AWAITING_APPROVAL. Its credits (the workflow's price) stay held throughout.
2. `request_changes` draws the front view again with the feedback: a new round that holds
   `change_cost` more at once (INSUFFICIENT_CREDITS when unavailable).
3. `approve` analyses the approved front view (colours, materials, key elements; the
   built-in analysis is deterministic) and starts one child generation per remaining view
   (`parent`, output index = the view's number), all in parallel. Children hold no credits.
4. When every view is done the parent COMPLETES (outputs: all views) and everything it held
   is captured; when a view fails after its retries the workflow FAILS, its other views are
   cancelled and everything it held is released. Cancelling it at any point releases all.
Moves the state machine does not allow are CONFLICT.

Its phase (`Generation.phase`) says which step it is at: FRONT_VIEW (NULL before the first
front view is drawn), APPROVAL, ANALYSIS, VIEWS. Its progress is the whole run's: the front
view fills the first FRONT_SHARE of the bar, the views the rest; within an attempt it never
goes down, and a round of changes keeps it where it was (the redraw shows in `stage`)."""

from __future__ import annotations

import io
import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from models.generation import Generation, GenerationKind, GenerationStatus, WorkflowPhase
from models.user import User
from services import credits, generations, jobs
from services.catalogue import Catalogue
from services.errors import BadUserInput, InvalidTransition
from services.generations import Guard, StoredOutput
from services.generations.failures import FailureCode
from services.generations.params import GenerationParams
from services.unit_of_work import atomic
from storage import OutputStore

FRONT_SHARE = 0.2  # of the parent's progress bar; the views share the rest
AWAITING = "awaiting approval"
ANALYSING = "analysing the front view"
DRAWING = "drawing the views"
REDRAWING = "redrawing the front view with your changes"
MATERIALS = (
    "leather",
    "suede",
    "canvas",
    "cotton",
    "denim",
    "wool",
    "silk",
    "linen",
    "metal",
    "steel",
    "aluminium",
    "aluminum",
    "brass",
    "wood",
    "bamboo",
    "glass",
    "ceramic",
    "porcelain",
    "plastic",
    "rubber",
    "concrete",
    "stone",
    "marble",
    "paper",
)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "with",
        "for",
        "in",
        "on",
        "at",
        "to",
        "by",
        "from",
        "front",
        "view",
        "back",
        "side",
        "top",
        "bottom",
        "product",
        "photo",
        "image",
        "picture",
    ]
)


async def _workflow_of(user: User, generation_id: uuid.UUID) -> Generation:
    """The user's multi-view workflow (NotFound, or CONFLICT for any other generation)."""
    generation = await generations.get_visible(user, generation_id)
    if generation.kind is not GenerationKind.MULTI_VIEW:
        raise InvalidTransition("Only a multi-view workflow can be approved or changed.")
    return generation


async def _leave_approval(current: Generation, refusal: str, **changes: Any) -> Generation:
    """AWAITING_APPROVAL (still `current`'s attempt) -> what `changes` say; CONFLICT with
    `refusal` when it is not (any more) awaiting approval."""
    parent = await generations.transition(
        current.id,
        Guard((GenerationStatus.AWAITING_APPROVAL,), attempt=current.attempts),
        **changes,
    )
    if parent is None:
        raise InvalidTransition(refusal)
    return parent


def change_rounds(generation: Generation) -> int:
    """How many rounds of changes were asked of a workflow: its front view was drawn again
    for each."""
    return len(generation.params.get("feedback") or [])


def front_prompt(parent: Generation) -> str:
    feedback = parent.params.get("feedback") or []
    changes = "".join(f" Changes requested: {note}." for note in feedback)
    return f"Front view of {parent.prompt}.{changes}"


def view_prompt(parent: Generation, view: str, features: dict[str, Any]) -> str:
    return (
        f"{view.capitalize()} view of {parent.prompt}, the same product as the approved "
        f"front view. Colours: {', '.join(features['colours'])}. "
        f"Materials: {', '.join(features['materials'])}. "
        f"Keep: {', '.join(features['elements'])}."
    )


def analyse(front: bytes, prompt: str) -> dict[str, Any]:
    """Deterministic features of the front view: its dominant colours, and the materials
    and key elements its description names."""
    with Image.open(io.BytesIO(front)) as image:
        small = image.convert("RGB").resize((64, 64)).quantize(colors=4)
        palette: list[int] = list(small.getpalette() or [])
        counts: list[tuple[int, int]] = sorted(small.getcolors() or [], reverse=True)  # type: ignore[arg-type]
    colours = []
    for _, index in counts[:3]:
        red, green, blue = palette[index * 3 : index * 3 + 3]
        colours.append(f"#{red:02x}{green:02x}{blue:02x}")
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", prompt)]
    materials = [w for w in dict.fromkeys(words) if w in MATERIALS] or ["as in the front view"]
    common = Counter(w for w in words if len(w) > 2 and w not in STOPWORDS and w not in MATERIALS)
    elements = [w for w, _ in common.most_common(5)] or ["the overall shape"]
    return {"colours": colours, "materials": materials, "elements": elements}


def progress(parent: Generation, fraction: float, stage: str) -> tuple[float, str]:
    """While the front view is drawn it fills its share of the bar; a redraw keeps the bar
    full to that share (it was shown before the changes were asked) and says so in stage."""
    shown = FRONT_SHARE * min(max(fraction, 0.0), 1.0)
    if change_rounds(parent):
        return max(shown, FRONT_SHARE), f"{REDRAWING}: {stage}"[:120]
    return shown, stage


async def front_view_ready(
    drawing: Generation, outputs: list[StoredOutput], provider: str
) -> Generation | None:
    """The front view is drawn: PROCESSING -> AWAITING_APPROVAL, with it as output 0. What
    was analysed of an earlier front view (an earlier attempt's) no longer holds."""
    async with atomic():
        parent = await generations.transition(
            drawing.id,
            Guard((GenerationStatus.PROCESSING,), attempt=drawing.attempts),
            status=GenerationStatus.AWAITING_APPROVAL,
            phase=WorkflowPhase.APPROVAL,
            progress=FRONT_SHARE,
            stage=AWAITING,
            provider=provider,
            params={k: v for k, v in drawing.params.items() if k != "features"},
            publish=False,
        )
        if parent is None:
            return None
        await generations.replace_outputs(parent, outputs)
        return parent


async def request_changes(
    user: User, generation_id: uuid.UUID, feedback: str, catalogue: Catalogue
) -> Generation:
    """AWAITING_APPROVAL -> QUEUED to redraw the front view with the feedback. The progress
    stays where it was: this round of the same attempt does not start the bar again."""
    feedback = feedback.strip()
    if not 1 <= len(feedback) <= 2000:
        raise BadUserInput("Feedback must be 1 to 2000 characters.", field="feedback")
    current = await _workflow_of(user, generation_id)
    change_cost = catalogue.workflow("multi_view").change_cost
    rounds = [*current.params.get("feedback", []), feedback]
    async with atomic():
        parent = await _leave_approval(
            current,
            "Changes can only be requested while awaiting approval.",
            status=GenerationStatus.QUEUED,
            phase=WorkflowPhase.FRONT_VIEW,
            stage=f"{REDRAWING} (round {len(rounds)})",
            cost=current.cost + change_cost,
            params={**current.params, "feedback": rounds},
            queued_at=datetime.now(UTC),
            publish=False,
        )
        if change_cost:
            await credits.add_to_hold(parent, change_cost, f"change-{len(rounds)}")
        generations.announce(parent, [])
        jobs.enqueue_after_commit(parent.id)
        return parent


async def approve(user: User, generation_id: uuid.UUID) -> Generation:
    current = await _workflow_of(user, generation_id)
    async with atomic():
        parent = await _leave_approval(
            current,
            "Only a workflow awaiting approval can be approved.",
            status=GenerationStatus.PROCESSING,
            phase=WorkflowPhase.ANALYSIS,
            stage=ANALYSING,
        )
        jobs.enqueue_after_commit(parent.id, actor=jobs.VIEWS, args=(str(parent.attempts),))
        return parent


async def start_views(
    parent_id: uuid.UUID, attempt: int, catalogue: Catalogue, store: OutputStore
) -> None:
    """Analyse the approved front view and start the views (actor `workflow.views`)."""
    parent = await Generation.get_or_none(id=parent_id)
    if (
        parent is None
        or parent.attempts != attempt
        or parent.phase is not WorkflowPhase.ANALYSIS
        or parent.status is not GenerationStatus.PROCESSING
    ):
        return  # a duplicate delivery, or the workflow moved on
    front = next(o for o in await generations.outputs_of(parent_id) if o.index == 0)
    features = analyse(await store.get(front.storage_key), parent.prompt)
    views = catalogue.workflow("multi_view").views
    async with atomic():
        claimed = await generations.transition(
            parent_id,
            Guard((GenerationStatus.PROCESSING,), attempt=attempt, phase=WorkflowPhase.ANALYSIS),
            phase=WorkflowPhase.VIEWS,
            stage=DRAWING,
            params={**parent.params, "features": features},
        )
        if claimed is None:
            return
        asked = GenerationParams.of(parent)
        for number, view in enumerate(views, start=1):
            child = await Generation.create(
                user_id=parent.user_id,
                parent_id=parent.id,
                kind=GenerationKind.IMAGE,
                status=GenerationStatus.QUEUED,
                stage="queued",
                model=parent.model,
                prompt=view_prompt(parent, view, features),
                negative_prompt=parent.negative_prompt,
                params=GenerationParams(
                    width=asked.width,
                    height=asked.height,
                    seed=asked.seed,
                    view=view,
                    view_index=number,
                    workflow_attempt=attempt,
                ).to_json(),
                cost=0,
                request_id=parent.request_id,
                queued_at=datetime.now(UTC),
            )
            generations.announce(child, [])
            jobs.enqueue_after_commit(child.id)


async def advance(parent: Generation) -> None:
    """A view ended: complete the workflow when all views are done, fail it when one failed,
    else move its progress."""
    attempt = parent.attempts
    if parent.phase is not WorkflowPhase.VIEWS or parent.status is not GenerationStatus.PROCESSING:
        return
    views = [
        v
        for v in await Generation.filter(parent_id=parent.id)
        if GenerationParams.of(v).workflow_attempt == attempt
    ]
    failed = next(
        (v for v in views if v.status in (GenerationStatus.FAILED, GenerationStatus.CANCELED)), None
    )
    if failed is not None:
        async with atomic():
            done = await generations.fail(
                parent.id,
                FailureCode.WORKFLOW_VIEW_FAILED,
                f"The {GenerationParams.of(failed).view or 'product'} view could not be made.",
                source="workflow.advance",
                attempt=attempt,
            )
            if done is not None:
                await generations.cancel_children(parent.id)
        return
    finished = [v for v in views if v.status is GenerationStatus.COMPLETED]
    if views and len(finished) == len(views):
        outputs = [o for o in await generations.outputs_of(parent.id) if o.index == 0]
        for view in sorted(finished, key=lambda v: GenerationParams.of(v).view_index or 0):
            outputs += await generations.outputs_of(view.id)
        await generations.complete(parent.id, outputs, parent.provider or "local", attempt=attempt)
        return
    share = (1 - FRONT_SHARE) * len(finished) / max(len(views), 1)
    await generations.report_progress(
        parent.id,
        FRONT_SHARE + share,
        f"{len(finished)} of {len(views)} views done",
        attempt=attempt,
    )


def waits_on_parts(parent: Generation) -> bool:
    return parent.phase in (WorkflowPhase.ANALYSIS, WorkflowPhase.VIEWS)


async def nudge() -> None:
    """Send the next step of every approved workflow again, in case its message was lost
    (both steps are idempotent)."""
    approved = await Generation.filter(
        kind=GenerationKind.MULTI_VIEW,
        status=GenerationStatus.PROCESSING,
        phase__in=(WorkflowPhase.ANALYSIS, WorkflowPhase.VIEWS),
    ).only("id", "phase", "attempts")
    for parent in approved:
        actor = jobs.VIEWS if parent.phase is WorkflowPhase.ANALYSIS else jobs.ADVANCE
        await jobs.send(actor, str(parent.id), str(parent.attempts))


class MultiView:
    """The multi-view workflow as the lifecycle sees it (services.workflows.base.Workflow)."""

    kind = GenerationKind.MULTI_VIEW

    def prompt(self, parent: Generation) -> str:
        return front_prompt(parent)

    def round(self, parent: Generation) -> int:
        return change_rounds(parent)

    def progress(self, parent: Generation, fraction: float, stage: str) -> tuple[float, str]:
        return progress(parent, fraction, stage)

    async def drawn(
        self, parent: Generation, outputs: list[StoredOutput], provider: str
    ) -> Generation | None:
        return await front_view_ready(parent, outputs, provider)

    async def advance(self, parent: Generation) -> None:
        await advance(parent)

    def waits_on_parts(self, parent: Generation) -> bool:
        return waits_on_parts(parent)

    async def nudge(self) -> None:
        await nudge()
