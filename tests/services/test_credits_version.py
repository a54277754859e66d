"""A balance's `version` is its account's own sequence: every move of that account bumps it by
one, moves of other accounts never do, and every message about the account (and the first
message of creditBalanceChanged) carries it. Both ways of moving an account count: the steps
(`credits._move`) and the one-statement accept and completion on PostgreSQL."""

from __future__ import annotations

import asyncio

from realtime import channels
from schema.build import build_schema
from services import auth, credits, generations
from services.generations import NewGeneration
from services.runner import run_generation
from tests.support.generations import CATALOGUE, registry
from tests.support.schema import request_context

BALANCE = "subscription { creditBalanceChanged { available reserved total version } }"


async def test_the_version_counts_the_accounts_own_moves(make_user, backend):
    user = await make_user(credits=5)
    assert (await credits.get_balance(user.id)).version == 1  # the signup grant
    other = await make_user(credits=5)
    for _ in range(3):
        await credits.adjust(other.id, 1, "another account's move")
    assert (await credits.get_balance(user.id)).version == 1

    async with backend.hub.subscribe(channels.user_credits(user.id)) as mailbox:
        generation = await generations.create_generation(
            user, NewGeneration(prompt="versions"), CATALOGUE
        )  # the hold: 2
        await run_generation(generation.id, CATALOGUE, registry(), backend.store)  # capture: 3
        await credits.adjust(user.id, 2, "a correction")  # 4
        mailbox.close()
        messages = [m async for m in mailbox]
    assert [m["version"] for m in messages][-1] == 4
    assert all(m["version"] in (2, 3, 4) for m in messages)
    balance = await credits.get_balance(user.id)
    assert (balance.available, balance.reserved, balance.version) == (6, 0, 4)


async def test_an_account_without_moves_is_at_version_zero(make_user):
    user = await make_user(credits=0)
    assert (await credits.get_balance(user.id)).version == 0


async def test_the_subscription_starts_at_the_accounts_version_and_follows_it(make_user, backend):
    user = await make_user(credits=5)
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    stream = await build_schema().subscribe(BALANCE, context_value=context)
    try:
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert first.errors is None, first.errors
        assert first.data == {
            "creditBalanceChanged": {"available": 5, "reserved": 0, "total": 5, "version": 1}
        }
        await credits.adjust(user.id, 3, "a gift")
        second = await asyncio.wait_for(stream.__anext__(), 5)
        assert second.data == {
            "creditBalanceChanged": {"available": 8, "reserved": 0, "total": 8, "version": 2}
        }
    finally:
        await stream.aclose()
