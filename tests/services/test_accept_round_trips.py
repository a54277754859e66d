"""The accept path in round trips: on PostgreSQL a new generation and the hold of its cost are
one statement, and that shortcut leaves exactly what the steps leave."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from models.credits import LedgerEntry
from models.generation import Generation
from realtime import channels
from services import credits, generations, jobs
from services.catalogue import load_catalogue
from services.errors import InsufficientCredits, NotFound
from services.generations import NewGeneration, creation
from tests.support.ledger import assert_ledger_matches
from tests.support.statements import drain, statements

CATALOGUE = load_catalogue()
# Everything about a row but what differs between two generations.
_VARYING = {"id", "created_at", "queued_at"}


async def test_accepting_is_one_statement(make_user, backend, monkeypatch):
    if backend.name != "postgres":
        pytest.skip("counts PostgreSQL statements")
    user = await make_user(credits=5)
    with statements(monkeypatch) as seen:
        await generations.create_generation(user, NewGeneration(prompt="a fox"), CATALOGUE)
    assert len(seen) == 1 and seen[0].startswith("WITH account AS (UPDATE credit_accounts")


async def _accepted(user: Any, backend: Any, **fields: Any) -> tuple[Generation, list[Any]]:
    """A generation accepted for `user`, with what its three channels received and the jobs
    that were sent for it."""
    watched = [channels.user_credits(user.id), channels.user_generations(user.id)]
    sent = len(backend.sent)
    async with contextlib.AsyncExitStack() as stack:
        boxes = [await stack.enter_async_context(backend.hub.subscribe(c)) for c in watched]
        generation = await generations.create_generation(
            user, NewGeneration(prompt="a red fox", **fields), CATALOGUE, request_id="req-1"
        )
        received = [await drain(box) for box in boxes]
    return generation, [*received, backend.sent[sent:]]


def _comparable(generation: Generation, user_id: Any) -> dict[str, Any]:
    row = {
        name: getattr(generation, name)
        for name in Generation._meta.fields_db_projection
        if name not in _VARYING
    }
    assert row.pop("user_id") == user_id
    return row


async def test_the_one_statement_does_what_the_steps_do(make_user, backend, monkeypatch):
    """Side by side: the same row, ledger entry, balance, messages (in order) and job."""

    async def accept(steps: bool) -> tuple[dict[str, Any], list[Any], Any]:
        user = await make_user(credits=9)
        with monkeypatch.context() as patch:
            if steps:
                patch.setattr(creation, "_queue_at_once", _never)
            generation, (balances, states, sent) = await _accepted(
                user, backend, num_outputs=2, seed=7, idempotency_key="k-1"
            )
        stored = await Generation.get(id=generation.id)
        assert _comparable(stored, user.id) == _comparable(generation, user.id)
        (entry,) = await LedgerEntry.filter(generation_id=generation.id)
        ledger = (entry.kind, entry.amount, entry.held, entry.balance_after, entry.reference)
        assert entry.unique_key == f"gen:{generation.id}:1:reserve"
        assert [b["version"] for b in balances] == [2]  # after the signup grant
        balances = [{k: v for k, v in b.items() if k != "version"} for b in balances]
        assert [(s["id"], s["user_id"]) for s in states] == [(str(generation.id), str(user.id))]
        states = [{k: v for k, v in s.items() if k not in _VARYING | {"user_id"}} for s in states]
        assert sent == [(jobs.RUN, (str(generation.id),), None)]
        balance = await credits.get_balance(user.id)
        await assert_ledger_matches(user.id)
        return (
            _comparable(generation, user.id),
            [ledger, balances, states],
            (balance.available, balance.reserved, balance.version),
        )

    assert await accept(steps=False) == await accept(steps=True)


async def _never(*args: Any, **kwargs: Any) -> None:
    return None


@pytest.mark.parametrize("steps", [False, True])
async def test_an_account_that_cannot_hold_the_cost_gets_nothing_written(
    make_user, backend, monkeypatch, steps
):
    if steps:
        monkeypatch.setattr(creation, "_queue_at_once", _never)
    user = await make_user(credits=1)
    sent = len(backend.sent)
    with pytest.raises(InsufficientCredits):
        await generations.create_generation(
            user, NewGeneration(prompt="two", num_outputs=2), CATALOGUE
        )
    assert await Generation.filter(user_id=user.id).count() == 0
    assert await LedgerEntry.filter(user_id=user.id).count() == 1  # the grant only
    assert (await credits.get_balance(user.id)).available == 1
    assert backend.sent[sent:] == []
    await credits.CreditAccount.filter(user_id=user.id).delete()
    with pytest.raises(NotFound):
        await generations.create_generation(user, NewGeneration(prompt="one"), CATALOGUE)
    assert await Generation.filter(user_id=user.id).count() == 0
