from __future__ import annotations

import asyncio

import pytest

from models.credits import CreditAccount, LedgerEntry, LedgerKind
from models.generation import Generation, GenerationKind, HoldState
from services import credits
from services.catalogue import load_catalogue
from services.errors import InsufficientCredits
from services.generations import NewGeneration, create_generation
from tests.support.ledger import assert_ledger_matches


async def test_signup_grant_is_a_ledger_entry(make_user):
    user = await make_user(credits=5)
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved, balance.total) == (5, 0, 5)
    entries = await LedgerEntry.filter(user_id=user.id)
    assert [(e.kind, e.amount, e.balance_after) for e in entries] == [(LedgerKind.GRANT, 5, 5)]
    await assert_ledger_matches(user.id)


async def _generation(user, cost: int = 1) -> Generation:
    return await create_generation(
        user, NewGeneration(prompt="x", num_outputs=cost), load_catalogue()
    )


async def test_capture_and_release_happen_once_whatever_the_order(make_user):
    user = await make_user(credits=5)
    generation = await _generation(user, cost=2)
    assert (await credits.get_balance(user.id)).reserved == 2

    results = [await credits.capture_for(generation.id) for _ in range(3)]
    results += [await credits.release_for(generation.id) for _ in range(3)]
    assert results == [True, False, False, False, False, False]

    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (3, 0)
    kinds = [e.kind for e in await LedgerEntry.filter(generation_id=generation.id).order_by("id")]
    assert kinds == [LedgerKind.RESERVE, LedgerKind.CAPTURE]
    assert (await Generation.get(id=generation.id)).hold is HoldState.CAPTURED
    await assert_ledger_matches(user.id)


async def test_concurrent_capture_and_release_settle_exactly_once(make_user):
    user = await make_user(credits=5)
    generation = await _generation(user)
    outcomes = await asyncio.gather(
        *[credits.capture_for(generation.id) for _ in range(5)],
        *[credits.release_for(generation.id) for _ in range(5)],
    )
    assert outcomes.count(True) == 1
    settled = await LedgerEntry.filter(
        generation_id=generation.id, kind__in=[LedgerKind.CAPTURE, LedgerKind.RELEASE]
    ).count()
    assert settled == 1
    assert (await credits.get_balance(user.id)).reserved == 0
    await assert_ledger_matches(user.id)


async def test_reserving_more_than_available_writes_nothing(make_user):
    user = await make_user(credits=3)
    with pytest.raises(InsufficientCredits) as raised:
        await _generation(user, cost=4)
    assert (raised.value.needed, raised.value.available) == (4, 3)
    assert await Generation.filter(user_id=user.id).count() == 0
    assert await LedgerEntry.filter(user_id=user.id).count() == 1  # the grant only
    await assert_ledger_matches(user.id)


async def test_concurrent_reservations_never_overdraw(make_user, backend):
    user = await make_user(credits=10)
    results = await asyncio.gather(*[_generation(user) for _ in range(30)], return_exceptions=True)
    accepted = [r for r in results if isinstance(r, Generation)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(accepted), len(refused)) == (10, 20)
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (0, 10)
    assert await Generation.filter(user_id=user.id).count() == 10
    await assert_ledger_matches(user.id)


async def test_balance_changes_are_published_after_commit(make_user, backend):
    user = await make_user(credits=5)
    from realtime import channels

    async with backend.hub.subscribe(channels.user_credits(user.id)) as mailbox:
        generation = await _generation(user)
        await credits.release_for(generation.id)
        mailbox.close()
        messages = [m async for m in mailbox]
    # Coalesced: the mailbox keeps the newest state per key.
    assert messages[-1]["available"] == 5 and messages[-1]["reserved"] == 0
    assert messages[-1]["version"] == (await credits.get_balance(user.id)).version


async def test_transactions_page_newest_first(make_user):
    user = await make_user(credits=5)
    for _ in range(3):
        await credits.release_for((await _generation(user)).id)
    first = await credits.list_transactions(user.id, first=4, after=None)
    assert first.has_next
    rest = await credits.list_transactions(
        user.id, first=10, after=first.cursor_of(first.items[-1])
    )
    ids = [e.id for e in first.items + rest.items]
    assert ids == sorted(ids, reverse=True) and len(ids) == 7
    assert not rest.has_next
    assert GenerationKind.IMAGE  # the catalogue's default model was used


async def test_admin_adjustment_never_goes_below_zero_and_is_idempotent(make_user):
    from services.errors import BadUserInput, Conflict, NotFound

    user = await make_user(credits=5)
    balance = await credits.adjust(user.id, 10, "goodwill", idempotency_key="ticket-1")
    assert balance.available == 15
    again = await credits.adjust(user.id, 10, "goodwill", idempotency_key="ticket-1")
    assert again.available == 15
    with pytest.raises(Conflict):
        await credits.adjust(user.id, 11, "goodwill", idempotency_key="ticket-1")
    with pytest.raises(InsufficientCredits):
        await credits.adjust(user.id, -16, "clawback")
    assert (await credits.adjust(user.id, -15, "clawback")).available == 0
    entry = await LedgerEntry.filter(user_id=user.id, kind=LedgerKind.ADJUSTMENT).first()
    assert entry is not None and entry.reference == "goodwill"
    with pytest.raises(BadUserInput):
        await credits.adjust(user.id, 0, "nothing")
    with pytest.raises(BadUserInput):
        await credits.adjust(user.id, 1, "   ")
    import uuid as _uuid

    with pytest.raises(NotFound):
        await credits.adjust(_uuid.uuid4(), 1, "who")


async def test_audit_finds_an_account_that_drifted_from_its_ledger(make_user):
    user = await make_user(credits=5)
    assert (await credits.audit()).ok
    await CreditAccount.filter(user_id=user.id).update(balance=6)
    audit = await credits.audit()
    assert not audit.ok and [m.user_id for m in audit.mismatches] == [user.id]
    assert (audit.mismatches[0].balance, audit.mismatches[0].ledger_sum) == (6, 5)
    await CreditAccount.filter(user_id=user.id).update(balance=5)
    assert (await credits.audit()).ok


async def test_the_sweeper_settles_holds_left_open_on_finished_generations(make_user):
    from models.generation import GenerationStatus

    user = await make_user(credits=5)
    done, failed = await _generation(user), await _generation(user)
    # Simulate transitions that lost their settlement (e.g. a crash mid-way).
    await Generation.filter(id=done.id).update(status=GenerationStatus.COMPLETED)
    await Generation.filter(id=failed.id).update(status=GenerationStatus.FAILED)
    assert await credits.settle_open_holds() >= 2
    assert await credits.settle_open_holds() == 0
    kinds = {
        e.generation_id: e.kind
        for e in await LedgerEntry.filter(
            generation_id__in=[done.id, failed.id],
            kind__in=[LedgerKind.CAPTURE, LedgerKind.RELEASE],
        )
    }
    assert kinds == {done.id: LedgerKind.CAPTURE, failed.id: LedgerKind.RELEASE}
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved) == (4, 0)


async def test_a_hold_and_its_capture_carry_the_attempts_key_on_every_path(make_user, backend):
    """On PostgreSQL accepting and completing are one statement each, elsewhere steps: both
    write the keys of `credits.hold_key` (and hold only what is available)."""
    from services import generations
    from services.generations import StoredOutput

    user = await make_user(credits=3)
    generation = await _generation(user, cost=2)
    with pytest.raises(InsufficientCredits):
        await _generation(user, cost=2)
    await generations.start(generation.id)
    output = StoredOutput(0, f"{user.id}/{generation.id}/0.png", "image/png", 1)
    outputs = [output, StoredOutput(1, f"{user.id}/{generation.id}/1.png", "image/png", 1)]
    assert await generations.complete(generation.id, outputs, "local") is not None
    entries = await LedgerEntry.filter(generation_id=generation.id).order_by("id")
    assert [(e.kind, e.unique_key) for e in entries] == [
        (LedgerKind.RESERVE, credits.hold_key(generation.id, 1, "reserve")),
        (LedgerKind.CAPTURE, credits.hold_key(generation.id, 1, "capture")),
    ]
    await assert_ledger_matches(user.id)


async def test_the_hold_key_reads_the_same_in_sql(backend):
    if backend.name != "postgres":
        pytest.skip("the SQL form is PostgreSQL's")
    from uuid import uuid4

    from tortoise import connections

    generation_id = uuid4()
    sql = f"SELECT {credits.hold_key_sql('$1::uuid', '$2::int', 'capture')} AS key"
    rows = await connections.get("default").execute_query_dict(sql, [str(generation_id), 3])
    assert rows[0]["key"] == credits.hold_key(generation_id, 3, "capture")
