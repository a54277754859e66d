"""Failing a generation is one function: the state, the refund, the owner's message and the
error event, whoever fails it (the runner, the sweeper, a workflow)."""

from __future__ import annotations

from models.error_event import Severity
from models.generation import Generation, GenerationStatus
from services import credits, generations
from services.generations.failures import FailureCode, refunded, user_message
from tests.support.error_events import events_of
from tests.support.generations import create
from tests.support.ledger import assert_ledger_matches


async def test_fail_records_its_own_error_event_once(make_user, backend):
    user = await make_user(credits=5)
    generation = await create(user)
    await generations.start(generation.id)
    failed = await generations.fail(generation.id, FailureCode.PROVIDER_ERROR)
    assert failed is not None
    # A second fail changes nothing and records nothing.
    assert await generations.fail(generation.id, FailureCode.PROVIDER_ERROR) is None
    (event,) = await events_of(generation.id)
    assert (event.error_code, event.severity, event.count) == ("PROVIDER_ERROR", Severity.ERROR, 1)
    assert event.user_message == failed.error_message
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_a_failure_that_rolls_back_records_nothing(make_user, backend):
    from services.unit_of_work import atomic

    user = await make_user(credits=5)
    generation = await create(user)
    await generations.start(generation.id)

    class Undo(Exception):
        pass

    try:
        async with atomic():
            assert await generations.fail(generation.id, FailureCode.INTERNAL_ERROR) is not None
            raise Undo
    except Undo:
        pass
    assert await events_of(generation.id) == []
    row = await Generation.get(id=generation.id)
    assert row.status is GenerationStatus.PROCESSING
    await assert_ledger_matches(user.id)


async def test_every_failure_tells_its_owner_the_credits_came_back(make_user, backend):
    for code in FailureCode:
        assert user_message(code).endswith(" Your credits were refunded.")
    assert user_message(FailureCode.WORKFLOW_VIEW_FAILED, "The side view could not be made.") == (
        refunded("The side view could not be made.")
    )
    user = await make_user(credits=5)
    generation = await create(user)
    await generations.start(generation.id)
    failed = await generations.fail(generation.id, FailureCode.CONTENT_REJECTED)
    assert failed is not None
    assert failed.error_message == user_message(FailureCode.CONTENT_REJECTED)
