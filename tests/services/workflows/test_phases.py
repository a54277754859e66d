"""A multi-view workflow's phase is a column that its own moves set, and what the sweeper
and the views' actor go by (not its stage text or params)."""

from __future__ import annotations

import uuid
from typing import Any

from models.generation import Generation, GenerationStatus, WorkflowPhase
from services import generations, jobs, sweeper, workflows
from tests.support.providers import provider_deps
from tests.support.workflows import CATALOGUE, awaiting_approval, new_workflow, run_pending


async def phase(generation_id: uuid.UUID) -> WorkflowPhase | None:
    return (await Generation.get(id=generation_id)).phase


async def test_each_move_sets_the_phase(make_user, backend):
    user = await make_user(credits=10)
    deps = provider_deps()
    parent = await new_workflow(user)
    seen = [await phase(parent.id)]
    await run_pending(backend, CATALOGUE, deps)
    seen.append(await phase(parent.id))
    await workflows.request_changes(user, parent.id, "greener", CATALOGUE)
    seen.append(await phase(parent.id))
    await run_pending(backend, CATALOGUE, deps)
    seen.append(await phase(parent.id))
    await workflows.approve(user, parent.id)
    seen.append(await phase(parent.id))
    actor, args, _ = backend.sent.pop(0)
    assert actor == jobs.VIEWS
    await workflows.start_views(uuid.UUID(args[0]), int(args[1]), CATALOGUE, backend.store)
    seen.append(await phase(parent.id))
    assert seen == [
        None,  # its first step, the front view, not drawn yet
        WorkflowPhase.APPROVAL,
        WorkflowPhase.FRONT_VIEW,
        WorkflowPhase.APPROVAL,
        WorkflowPhase.ANALYSIS,
        WorkflowPhase.VIEWS,
    ]
    # The views' own params no longer carry a phase of the parent's.
    assert "phase" not in (await Generation.get(id=parent.id)).params

    await generations.cancel(user, parent.id)
    retried = await generations.retry(user, parent.id)
    assert retried.phase is None and "features" in retried.params
    await run_pending(backend, CATALOGUE, deps)
    drawn = await Generation.get(id=parent.id)
    # A new front view: what was analysed of the old one is gone.
    assert drawn.phase is WorkflowPhase.APPROVAL and "features" not in drawn.params


async def sent_for(backend: Any, parent: Generation) -> list[tuple[str, str]]:
    """The jobs sent for `parent` and its views, in order."""
    ours = {str(parent.id)} | {
        str(view.id) for view in await Generation.filter(parent_id=parent.id).only("id")
    }
    return [(actor, args[0]) for actor, args, _ in backend.sent if args[0] in ours]


async def test_the_sweeper_sends_again_the_step_a_phase_waits_for(make_user, backend):
    user = await make_user(credits=10)
    deps = provider_deps()
    parent = await awaiting_approval(user, backend, deps)
    await workflows.approve(user, parent.id)
    backend.sent.clear()  # the views' message is lost
    await sweeper.sweep(CATALOGUE, requeue_after=3600)
    # Only this workflow's: other tests' rows (a lapsed lease, say) may be swept too.
    assert await sent_for(backend, parent) == [(jobs.VIEWS, str(parent.id))]

    await run_pending(backend, CATALOGUE, deps)
    assert (await Generation.get(id=parent.id)).status is GenerationStatus.COMPLETED
    await sweeper.sweep(CATALOGUE, requeue_after=3600)
    assert await sent_for(backend, parent) == []  # nothing waits any more
