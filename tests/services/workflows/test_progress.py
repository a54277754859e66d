"""A multi-view workflow's progress is the whole run's: the front view fills only its share,
and within an attempt the progress a subscriber sees never goes down, rounds of changes
included (a redraw shows in `stage`, not as a bar going back)."""

from __future__ import annotations

import itertools

import pytest

from models.generation import GenerationStatus
from realtime import channels
from services import generations, runner, workflows
from services.workflows import multi_view
from tests.support.providers import provider_deps
from tests.support.workflows import (
    CATALOGUE,
    awaiting_approval,
    every_message,
    new_workflow,
    run_pending,
)


@pytest.fixture
def every_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every progress report of the provider is written (none coalesced away), so the
    subscriber sees each value the bar takes."""
    monkeypatch.setattr(runner, "PROGRESS_INTERVAL", 0.0)


def rises(values: list[float]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


@pytest.mark.usefixtures("every_report")
async def test_progress_never_goes_down_through_changes_and_views(make_user, backend):
    user = await make_user(credits=10)
    deps = provider_deps()
    with every_message(backend.hub, channels.user_generations(user.id)) as published:
        parent = await new_workflow(user)
        await run_pending(backend, CATALOGUE, deps)
        await workflows.request_changes(user, parent.id, "make it greener", CATALOGUE)
        await run_pending(backend, CATALOGUE, deps)
        await workflows.approve(user, parent.id)
        await run_pending(backend, CATALOGUE, deps)
    seen = [m for m in published if m["id"] == str(parent.id)]

    assert seen[-1]["status"] == GenerationStatus.COMPLETED.value
    progress = [m["progress"] for m in seen]
    assert rises(progress), [(m["status"], m["progress"], m["stage"]) for m in seen]
    assert progress[-1] == 1.0
    # Until approval only the front view is drawn: it fills its share of the bar, no more,
    # and the bar did move while it was drawn.
    approved = next(i for i, m in enumerate(seen) if m["stage"] == multi_view.ANALYSING)
    before_views = progress[:approved]
    assert max(before_views) == pytest.approx(multi_view.FRONT_SHARE)
    assert len(set(before_views)) > 2
    # The round of changes shows in the stage.
    redraw = [m for m in seen if m["params"].get("feedback")]
    assert redraw and "change" in redraw[0]["stage"]


@pytest.mark.usefixtures("every_report")
async def test_a_retry_is_a_new_attempt_that_starts_from_zero(make_user, backend):
    user = await make_user(credits=10)
    deps = provider_deps()
    parent = await awaiting_approval(user, backend, deps)
    await generations.cancel(user, parent.id)
    retried = await generations.retry(user, parent.id)
    assert (retried.attempts, retried.progress) == (2, 0.0)
    with every_message(backend.hub, channels.generation(parent.id)) as published:
        await run_pending(backend, CATALOGUE, deps)
    progress = [m["progress"] for m in published]
    assert rises(progress) and progress[-1] == pytest.approx(multi_view.FRONT_SHARE)
