"""The MULTI_VIEW workflow, driven step by step the way the workers do it."""

from __future__ import annotations

import uuid

import pytest

from models.credits import LedgerEntry, LedgerKind
from models.generation import Generation, GenerationStatus
from providers.base import ProgressCallback, ProviderError, ProviderRequest, Result
from providers.local import LocalProvider
from services import credits, generations, jobs, workflows
from services.catalogue import parse_catalogue
from services.errors import InsufficientCredits, InvalidTransition
from services.generations import NewGeneration
from tests.support.error_events import events_of
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import provider_deps
from tests.support.workflows import CATALOGUE, new_workflow, run_pending


class SideFails(LocalProvider):
    """Draws like the local provider, except the side view."""

    name = "sidefails"

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        if request.prompt.startswith("Side view"):
            raise ProviderError("PROVIDER_REJECTED", "no sides today", retryable=False)
        return await super().start(request, progress)


async def test_two_rounds_of_changes_then_approval_captures_everything_once(make_user, backend):
    user = await make_user(credits=10)
    backend.sent.clear()
    parent = await new_workflow(user)
    assert (parent.cost, parent.model) == (3, "local-image")
    deps = provider_deps()
    await run_pending(backend, CATALOGUE, deps)
    row = await Generation.get(id=parent.id)
    assert (row.status, row.progress) == (GenerationStatus.AWAITING_APPROVAL, 0.2)
    assert [o.index for o in await generations.outputs_of(parent.id)] == [0]

    for round_ in (1, 2):
        changed = await workflows.request_changes(
            user, parent.id, f"make it {round_} greener", CATALOGUE
        )
        assert (changed.status, changed.cost) == (GenerationStatus.QUEUED, 3 + round_)
        assert (await credits.get_balance(user.id)).reserved == 3 + round_
        await run_pending(backend, CATALOGUE, deps)
        assert (await Generation.get(id=parent.id)).status is GenerationStatus.AWAITING_APPROVAL

    approved = await workflows.approve(user, parent.id)
    assert approved.status is GenerationStatus.PROCESSING
    with pytest.raises(InvalidTransition):
        await workflows.approve(user, parent.id)  # twice
    with pytest.raises(InvalidTransition):
        await workflows.request_changes(user, parent.id, "too late", CATALOGUE)
    await run_pending(backend, CATALOGUE, deps)

    row = await Generation.get(id=parent.id)
    assert row.status is GenerationStatus.COMPLETED and row.progress == 1.0
    views = await Generation.filter(parent_id=parent.id).order_by("created_at")
    assert [v.params["view"] for v in views] == ["back", "side", "top", "bottom"]
    assert all(v.status is GenerationStatus.COMPLETED and v.cost == 0 for v in views)
    assert "Colours: #" in views[0].prompt and "leather" in views[0].prompt
    assert "brass" in row.params["features"]["materials"]
    outputs = await generations.outputs_of(parent.id)
    assert [o.index for o in outputs] == [0, 1, 2, 3, 4]
    for view in views:
        [own] = await generations.outputs_of(view.id)
        assert own.index == view.params["viewIndex"]
    ledger = await LedgerEntry.filter(generation_id=parent.id).order_by("id")
    assert [(e.kind, e.amount, e.held) for e in ledger] == [
        (LedgerKind.RESERVE, -3, 3),
        (LedgerKind.RESERVE, -1, 1),
        (LedgerKind.RESERVE, -1, 1),
        (LedgerKind.CAPTURE, 0, -5),
    ]
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (5, 0)
    await assert_ledger_matches(user.id)


async def test_a_failed_view_fails_the_workflow_and_releases_everything(make_user, backend):
    catalogue = parse_catalogue(
        {
            "models": {
                "sides": {
                    "kind": "IMAGE",
                    "cost_per_output": 1,
                    "default": True,
                    "routes": [{"provider": "sidefails", "model": "x"}],
                }
            },
            "workflows": {"multi_view": {"cost": 3, "change_cost": 1, "model": "sides"}},
        }
    )
    deps = provider_deps(SideFails(step_delay=0))
    user = await make_user(credits=5)
    backend.sent.clear()
    parent = await new_workflow(user, catalogue)
    await run_pending(backend, catalogue, deps)
    await workflows.approve(user, parent.id)
    await run_pending(backend, catalogue, deps)
    row = await Generation.get(id=parent.id)
    assert (row.status, row.error_code) == (GenerationStatus.FAILED, "WORKFLOW_VIEW_FAILED")
    assert row.error_message and "side" in row.error_message
    # The workflow's own failure is recorded as an error event, as every failure is.
    assert [e.error_code for e in await events_of(parent.id)] == ["WORKFLOW_VIEW_FAILED"]
    views = {v.params["view"]: v.status for v in await Generation.filter(parent_id=parent.id)}
    assert views["side"] is GenerationStatus.FAILED
    assert all(
        s in (GenerationStatus.COMPLETED, GenerationStatus.CANCELED)
        for v, s in views.items()
        if v != "side"
    )
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_cancelling_while_views_run_cancels_them_and_releases(make_user, backend):
    user = await make_user(credits=5)
    backend.sent.clear()
    parent = await new_workflow(user)
    deps = provider_deps()
    await run_pending(backend, CATALOGUE, deps)
    await workflows.approve(user, parent.id)
    args = next(a for actor, a, _ in backend.sent if actor == jobs.VIEWS)
    await workflows.start_views(uuid.UUID(args[0]), int(args[1]), CATALOGUE, backend.store)
    await generations.cancel(user, parent.id)
    views = await Generation.filter(parent_id=parent.id)
    assert len(views) == 4 and {v.status for v in views} == {GenerationStatus.CANCELED}
    await run_pending(backend, CATALOGUE, deps)  # the views' jobs arrive late: nothing runs
    assert {v.status for v in await Generation.filter(parent_id=parent.id)} == {
        GenerationStatus.CANCELED
    }
    assert (await Generation.get(id=parent.id)).status is GenerationStatus.CANCELED
    assert (await credits.get_balance(user.id)).available == 5


async def test_moves_the_workflow_does_not_allow(make_user, backend):
    user = await make_user(credits=3)
    backend.sent.clear()
    parent = await new_workflow(user)
    with pytest.raises(InvalidTransition):  # still drawing the front view
        await workflows.request_changes(user, parent.id, "greener", CATALOGUE)
    await run_pending(backend, CATALOGUE, provider_deps())
    with pytest.raises(InsufficientCredits):  # a round of changes costs 1 more
        await workflows.request_changes(user, parent.id, "greener", CATALOGUE)
    row = await Generation.get(id=parent.id)
    assert (row.status, row.cost, row.params.get("feedback")) == (
        GenerationStatus.AWAITING_APPROVAL,
        3,
        None,
    )
    plain = await generations.create_generation(
        await make_user(), NewGeneration(prompt="x"), CATALOGUE
    )
    owner = await Generation.get(id=plain.id).prefetch_related("user")
    with pytest.raises(InvalidTransition):  # not a workflow
        await workflows.approve(owner.user, plain.id)
    await workflows.approve(user, parent.id)
    args = next(a for actor, a, _ in backend.sent if actor == jobs.VIEWS)
    await workflows.start_views(uuid.UUID(args[0]), int(args[1]), CATALOGUE, backend.store)
    view = await Generation.filter(parent_id=parent.id).first()
    assert view is not None
    with pytest.raises(InvalidTransition):
        await generations.cancel(user, view.id)
    await generations.cancel(user, parent.id)
    await assert_ledger_matches(user.id)
