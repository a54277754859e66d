"""The worker's hot path in round trips: what a generation costs the database (PostgreSQL,
where the one-statement forms apply), and that the shortcuts keep the same results."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from models.credits import LedgerEntry, LedgerKind
from models.generation import Generation, GenerationOutput, GenerationStatus, HoldState
from models.notification import Notification
from models.stats import GenerationHourlyCount
from realtime import channels
from services import credits, generations, stats
from services.catalogue import load_catalogue
from services.generations import NewGeneration, ProviderJob, StoredOutput
from tests.support.ledger import assert_ledger_matches
from tests.support.statements import drain, statements

CATALOGUE = load_catalogue()


async def started(user) -> Generation:
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a red fox", num_outputs=2), CATALOGUE
    )
    assert await generations.start(generation.id) is not None
    return generation


def output(generation: Generation, index: int) -> StoredOutput:
    key = f"{generation.user_id}/{generation.id}/{index}.png"
    return StoredOutput(index, key, "image/png", 10 + index, 64, 64)


async def test_start_is_one_statement(make_user, backend, monkeypatch):
    if backend.name != "postgres":
        pytest.skip("counts PostgreSQL statements")
    user = await make_user()
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a red fox"), CATALOGUE
    )
    with statements(monkeypatch) as seen:
        assert await generations.start(generation.id) is not None
    assert len(seen) == 1, seen
    assert "EXISTS" not in seen[0]  # only a completion asks whether outputs are there


async def test_completion_takes_one_statement(make_user, backend, monkeypatch):
    """The usual completion (everything asked delivered, no earlier outputs, not a view, not
    long enough to notify) is one statement: the conditional UPDATE, the outputs, the
    hold's capture with its ledger entry and the hourly counter, without BEGIN or COMMIT."""
    if backend.name != "postgres":
        pytest.skip("counts PostgreSQL statements")
    user = await make_user()
    generation = await started(user)
    with statements(monkeypatch) as seen:
        done = await generations.complete(
            generation.id, [output(generation, 0), output(generation, 1)], "local"
        )
    assert done is not None
    assert len(seen) == 1, "\n".join(s[:70] for s in seen)
    assert not any(s.startswith(("SAVEPOINT", "DELETE", "BEGIN")) for s in seen), seen


async def test_other_completions_take_the_steps_after_the_one(make_user, backend, monkeypatch):
    """A partly delivered batch: the one statement matches nothing, then BEGIN, the
    conditional UPDATE (which also says whether outputs exist), one INSERT of the outputs,
    the hold's flip, the account with its ledger entry twice (capture and release), the
    hourly counter, COMMIT: no savepoint, no separate SELECT, no DELETE of outputs that are
    not there."""
    if backend.name != "postgres":
        pytest.skip("counts PostgreSQL statements")
    user = await make_user()
    generation = await started(user)
    with statements(monkeypatch) as seen:
        done = await generations.complete(generation.id, [output(generation, 0)], "local")
    assert done is not None
    assert len(seen) == 1 + 8, "\n".join(s[:70] for s in seen)
    assert seen[0].startswith("WITH gen AS")
    assert not any(s.startswith(("SAVEPOINT", "DELETE")) for s in seen), seen


async def test_the_one_statement_completion_does_what_the_steps_do(make_user, backend):
    """Same rows, same ledger entry, same counter, same messages in the same order as the
    steps (compared side by side: a partly delivered batch always takes the steps)."""
    user = await make_user(credits=10)
    generation = await started(user)
    channels_of = [
        channels.generation(generation.id),
        channels.user_generations(user.id),
        channels.user_credits(user.id),
    ]
    before = await _completed_count(generation.model)
    async with contextlib.AsyncExitStack() as stack:
        boxes = [await stack.enter_async_context(backend.hub.subscribe(c)) for c in channels_of]
        done = await generations.complete(
            generation.id, [output(generation, 0), output(generation, 1)], "local", attempt=1
        )
        received = [await drain(box) for box in boxes]
    assert done is not None
    assert (done.status, done.progress, done.stage, done.provider) == (
        GenerationStatus.COMPLETED,
        1.0,
        "completed",
        "local",
    )
    assert done.version == generation.version + 2  # start, then completion
    row = await Generation.get(id=generation.id)
    assert (row.status, row.hold, row.version) == (
        GenerationStatus.COMPLETED,
        HoldState.CAPTURED,
        done.version,
    )
    assert row.completed_at == done.completed_at
    stored = await generations.outputs_of(generation.id)
    assert stored == [output(generation, 0), output(generation, 1)]
    assert all(r.created_at for r in await GenerationOutput.filter(generation_id=generation.id))
    entries = await LedgerEntry.filter(generation_id=generation.id).order_by("id")
    assert [(e.kind, e.amount, e.held, e.unique_key, e.reference) for e in entries[1:]] == [
        (LedgerKind.CAPTURE, 0, -2, f"gen:{generation.id}:1:capture", None),
    ]
    assert entries[-1].balance_after == 8
    assert not await credits.capture_for(generation.id)  # settled: a no-op
    assert await _completed_count(generation.model) == before + 1
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (8, 0)
    generation_messages, user_messages, credit_messages = received
    assert [m["status"] for m in generation_messages] == ["COMPLETED"]
    assert generation_messages[0]["version"] == done.version
    assert [o["storage_key"] for o in generation_messages[0]["outputs"]] == [
        output(generation, 0).storage_key,
        output(generation, 1).storage_key,
    ]
    assert user_messages == generation_messages
    # The account's third move (the signup grant, the hold, this capture).
    assert credit_messages == [{"available": 8, "reserved": 0, "version": 3}]
    await assert_ledger_matches(user.id)


async def test_a_completion_that_is_not_live_writes_nothing(make_user):
    user = await make_user()
    generation = await started(user)
    outputs = [output(generation, 0), output(generation, 1)]
    assert await generations.complete(generation.id, outputs, "x", attempt=2) is None
    row = await Generation.get(id=generation.id)  # the attempt is 1: nothing changed
    assert (row.status, row.hold, row.version) == (
        GenerationStatus.PROCESSING,
        HoldState.HELD,
        generation.version + 1,
    )
    assert await generations.outputs_of(generation.id) == []
    assert await LedgerEntry.filter(generation_id=generation.id).count() == 1


async def test_free_and_long_completions_match_the_steps(make_user, backend):
    """No credits to capture (cost 0): no ledger entry; a long wait: the steps, which also
    notify the owner."""
    user = await make_user()
    free = await started(user)
    # A generation that holds nothing (as a free cache hit would): its hold given back first.
    assert await credits.release_for(free.id)
    await Generation.filter(id=free.id).update(cost=0, hold=HoldState.HELD)
    done = await generations.complete(
        free.id, [output(free, 0), output(free, 1)], "local", attempt=1
    )
    assert done is not None and done.status is GenerationStatus.COMPLETED
    assert await LedgerEntry.filter(generation_id=free.id).count() == 2  # reserve, release
    assert (await Generation.get(id=free.id)).hold is HoldState.CAPTURED

    slow = await started(user)
    await Generation.filter(id=slow.id).update(queued_at=datetime.now(UTC) - timedelta(hours=1))
    done = await generations.complete(
        slow.id, [output(slow, 0), output(slow, 1)], "local", attempt=1
    )
    assert done is not None
    assert await Notification.filter(generation_id=slow.id).count() == 1


async def _completed_count(model: str) -> int:
    rows = await GenerationHourlyCount.filter(model=model)
    return sum(r.completed for r in rows)


async def test_completion_replaces_outputs_already_there(make_user):
    """A row that has outputs (a workflow's front view) gets them replaced, not added to."""
    user = await make_user()
    generation = await started(user)
    await GenerationOutput.create(
        generation_id=generation.id,
        index=0,
        storage_key="old/0.png",
        content_type="image/png",
        size_bytes=1,
    )
    done = await generations.complete(
        generation.id, [output(generation, 0), output(generation, 1)], "local"
    )
    assert done is not None
    stored = await generations.outputs_of(generation.id)
    assert [(o.index, o.storage_key, o.size_bytes) for o in stored] == [
        (0, output(generation, 0).storage_key, 10),
        (1, output(generation, 1).storage_key, 11),
    ]
    rows = await GenerationOutput.filter(generation_id=generation.id)
    assert all(row.created_at is not None for row in rows)


async def test_completion_captures_once_with_the_attempt_key(make_user):
    user = await make_user(credits=5)
    generation = await started(user)
    done = await generations.complete(generation.id, [output(generation, 0)], "local")
    assert done is not None
    # Half of the batch delivered: one credit captured, one released, in the same step.
    entries = await LedgerEntry.filter(generation_id=generation.id).order_by("id")
    assert [(e.kind, e.amount, e.held, e.unique_key) for e in entries[1:]] == [
        (LedgerKind.CAPTURE, 0, -1, f"gen:{generation.id}:1:capture"),
        (LedgerKind.RELEASE, 1, -1, f"gen:{generation.id}:1:release"),
    ]
    assert entries[-1].balance_after == 4
    row = await Generation.get(id=generation.id)
    assert (row.status, row.hold) == (GenerationStatus.COMPLETED, HoldState.CAPTURED)
    assert not await credits.capture_for(generation.id)  # settled already: a no-op
    balance = await credits.get_balance(user.id)
    # The grant, the hold, then the capture and the release: two moves of the account.
    assert (balance.available, balance.reserved, balance.version) == (4, 0, 4)
    await assert_ledger_matches(user.id)


async def test_a_failed_step_rolls_back_the_whole_completion(make_user, monkeypatch):
    """The capture joins the completion's transaction: when a later step fails, the
    generation, its outputs and the capture are all rolled back together."""
    user = await make_user()
    generation = await started(user)

    async def broken(_generation: Generation) -> None:
        raise RuntimeError("the counter is down")

    monkeypatch.setattr(stats, "observe_transition", broken)
    with pytest.raises(RuntimeError):
        await generations.complete(generation.id, [output(generation, 0)], "local")
    row = await Generation.get(id=generation.id)
    assert (row.status, row.hold) == (GenerationStatus.PROCESSING, HoldState.HELD)
    assert await generations.outputs_of(generation.id) == []
    assert await LedgerEntry.filter(generation_id=generation.id).count() == 1  # the reserve
    await assert_ledger_matches(user.id)


async def test_a_provider_job_is_claimed_exactly_once(make_user):
    user = await make_user()
    generation = await started(user)
    attached = await generations.attach_job(
        generation.id, 1, ProviderJob("j-1", "replicate", 0), "processing"
    )
    assert attached is not None
    assert not await generations.claim_job(generation.id, "another-job")
    assert await generations.claim_job(generation.id, "j-1")
    assert not await generations.claim_job(generation.id, "j-1")  # the webhook came second
    row = await Generation.get(id=generation.id)
    assert row.provider_job_id is None
    assert row.provider_job == {"job": "j-1", "provider": "replicate", "route": 0}
    assert row.version == attached.version  # not a visible change


async def test_get_row_reads_what_the_orm_reads(make_user):
    user = await make_user()
    generation = await started(user)
    read = await generations.get_row(generation.id)
    assert read is not None
    orm = await Generation.get(id=generation.id)
    columns = Generation._meta.db_fields  # the stored columns (relations are not read)
    assert {f: getattr(read, f) for f in columns} == {f: getattr(orm, f) for f in columns}
    assert read.user_id == user.id
    assert await generations.get_row(uuid.uuid4()) is None
