from __future__ import annotations

import asyncio
import uuid

import pytest

from models.credits import LedgerEntry, LedgerKind
from models.generation import Generation, GenerationStatus, HoldState
from realtime import channels
from services import credits, generations
from services.catalogue import load_catalogue
from services.errors import BadUserInput, Conflict, InvalidTransition, NotFound
from services.generations import StoredOutput
from services.generations.failures import FailureCode
from tests.support.generations import create
from tests.support.ledger import assert_ledger_matches

CATALOGUE = load_catalogue()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"num_outputs": 0}, "numOutputs"),
        ({"num_outputs": 5}, "numOutputs"),
        ({"width": 63}, "width"),
        ({"height": 2049}, "height"),
        ({"strength": 1.5}, "strength"),
        ({"strength": -0.1}, "strength"),
        ({"seed": -1}, "seed"),
        ({"model": "no-such-model"}, "model"),
        ({"model": "local-text"}, "model"),  # a TEXT model asked for an IMAGE
        ({"preset": "nope"}, "preset"),
        ({"negative_prompt": "x" * 4001}, "negativePrompt"),
        ({"idempotency_key": "k" * 256}, "idempotencyKey"),
        ({"input_image_url": "file:///etc/passwd"}, "inputImageUrl"),
        ({"input_image_url": "https://example.com/a.png"}, "inputImageUrl"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(make_user, fields, field):
    user = await make_user()
    with pytest.raises(BadUserInput) as raised:
        await create(user, **fields)
    assert raised.value.field == field
    assert await Generation.filter(user_id=user.id).count() == 0
    assert (await credits.get_balance(user.id)).available == 5


async def test_create_holds_the_cost_and_queues_after_commit(make_user, backend):
    user = await make_user(credits=5)
    sent_before = len(backend.sent_jobs)
    async with backend.hub.subscribe(channels.user_generations(user.id)) as mailbox:
        generation = await create(user, num_outputs=3, width=256, height=128, seed=7)
        mailbox.close()
        messages = [m async for m in mailbox]
    assert generation.status is GenerationStatus.QUEUED
    assert (generation.cost, generation.model, generation.hold) == (
        3,
        "local-image",
        HoldState.HELD,
    )
    assert generation.params == {"numOutputs": 3, "width": 256, "height": 128, "seed": 7}
    assert backend.sent_jobs[sent_before:] == [str(generation.id)]
    assert [m["status"] for m in messages] == ["QUEUED"]
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (2, 3)


async def test_preset_fills_in_prompt_negative_prompt_strength_and_price(make_user):
    user = await make_user()
    generation = await create(user, preset="express_enhance", prompt="my holiday photo")
    assert generation.prompt.startswith("my holiday photo, ")
    assert generation.negative_prompt == "blurry, hazy, soft, distorted"
    assert generation.params["strength"] == 0.7
    assert generation.preset == "express_enhance"


async def test_lifecycle_bumps_version_and_never_moves_progress_back(make_user):
    user = await make_user()
    generation = await create(user)
    started = await generations.start(generation.id)
    assert started is not None and started.status is GenerationStatus.PROCESSING
    assert await generations.start(generation.id) is None  # a redelivered message
    assert await generations.report_progress(generation.id, 0.5, "half")
    assert await generations.report_progress(generation.id, 0.2, "back?")  # ignored, live
    row = await Generation.get(id=generation.id)
    assert (row.progress, row.stage) == (0.5, "half")
    output = StoredOutput(0, f"{user.id}/{generation.id}/0.png", "image/png", 10, 64, 64)
    done = await generations.complete(generation.id, [output], "local")
    assert done is not None and done.status is GenerationStatus.COMPLETED
    assert done.version == started.version + 2
    assert await generations.complete(generation.id, [output], "local") is None
    assert [o.storage_key for o in await generations.outputs_of(generation.id)] == [
        output.storage_key
    ]
    assert (await credits.get_balance(user.id)).available == 4
    await assert_ledger_matches(user.id)


async def test_fail_releases_credits_once(make_user):
    user = await make_user()
    generation = await create(user, num_outputs=2)
    await generations.start(generation.id)
    failed = await generations.fail(generation.id, FailureCode.PROVIDER_ERROR)
    assert failed is not None and failed.error_code == "PROVIDER_ERROR"
    assert await generations.fail(generation.id, FailureCode.INTERNAL_ERROR) is None
    assert (await credits.get_balance(user.id)).available == 5
    await assert_ledger_matches(user.id)


async def test_cancel_then_retry_holds_again_under_a_new_attempt(make_user):
    user = await make_user(credits=5)
    generation = await create(user, num_outputs=2)
    canceled = await generations.cancel(user, generation.id)
    assert canceled.status is GenerationStatus.CANCELED
    with pytest.raises(InvalidTransition):
        await generations.cancel(user, generation.id)
    assert (await credits.get_balance(user.id)).available == 5

    retried = await generations.retry(user, generation.id)
    assert (retried.status, retried.attempts, retried.hold) == (
        GenerationStatus.QUEUED,
        2,
        HoldState.HELD,
    )
    with pytest.raises(InvalidTransition):
        await generations.retry(user, generation.id)
    await generations.start(generation.id)
    await generations.complete(generation.id, [], "local")
    kinds = [e.kind for e in await LedgerEntry.filter(generation_id=generation.id).order_by("id")]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.RELEASE, LedgerKind.RESERVE, LedgerKind.CAPTURE]
    assert (await credits.get_balance(user.id)).available == 3
    await assert_ledger_matches(user.id)


async def test_cancel_racing_completion_settles_exactly_once(make_user):
    user = await make_user()
    generation = await create(user)
    await generations.start(generation.id)
    results = await asyncio.gather(
        generations.complete(generation.id, [], "local"),
        generations.cancel(user, generation.id),
        return_exceptions=True,
    )
    row = await Generation.get(id=generation.id)
    settled = await LedgerEntry.filter(
        generation_id=generation.id, kind__in=[LedgerKind.CAPTURE, LedgerKind.RELEASE]
    )
    assert len(settled) == 1
    expected = (
        LedgerKind.CAPTURE if row.status is GenerationStatus.COMPLETED else LedgerKind.RELEASE
    )
    assert settled[0].kind is expected
    assert sum(isinstance(r, InvalidTransition) or r is None for r in results) == 1
    await assert_ledger_matches(user.id)


async def test_other_users_generations_are_not_found(make_user):
    owner, other = await make_user(), await make_user()
    generation = await create(owner)
    with pytest.raises(NotFound):
        await generations.get_visible(other, generation.id)
    with pytest.raises(NotFound):
        await generations.cancel(other, generation.id)
    with pytest.raises(NotFound):
        await generations.retry(other, uuid.uuid4())
    assert (await Generation.get(id=generation.id)).status is GenerationStatus.QUEUED


async def test_admins_see_every_generation(make_user):
    from models.user import Role

    owner, admin = await make_user(), await make_user(role=Role.ADMIN)
    generation = await create(owner)
    assert (await generations.get_visible(admin, generation.id)).id == generation.id


async def test_idempotency_key_replays_same_request_and_conflicts_on_another(make_user):
    user = await make_user(credits=5)
    first = await create(user, idempotency_key="order-42")
    again = await create(user, idempotency_key="order-42")
    assert again.id == first.id
    assert (await credits.get_balance(user.id)).available == 4
    with pytest.raises(Conflict):
        await create(user, idempotency_key="order-42", prompt="something else")
    other_user = await make_user()
    assert (await create(other_user, idempotency_key="order-42")).id != first.id


async def test_concurrent_requests_with_one_idempotency_key_charge_once(make_user):
    user = await make_user(credits=5)
    results = await asyncio.gather(*[create(user, idempotency_key="dup") for _ in range(8)])
    assert len({r.id for r in results}) == 1
    assert (await credits.get_balance(user.id)).available == 4


async def test_a_worker_of_an_old_attempt_cannot_touch_the_new_one(make_user):
    user = await make_user(credits=5)
    generation = await create(user)
    await generations.start(generation.id)
    await generations.cancel(user, generation.id)
    await generations.retry(user, generation.id)
    await generations.start(generation.id)
    assert not await generations.report_progress(generation.id, 0.5, "stale", attempt=1)
    assert await generations.complete(generation.id, [], "local", attempt=1) is None
    assert await generations.fail(generation.id, FailureCode.INTERNAL_ERROR, attempt=1) is None
    assert await generations.report_progress(generation.id, 0.5, "live", attempt=2)
    assert await generations.complete(generation.id, [], "local", attempt=2) is not None
