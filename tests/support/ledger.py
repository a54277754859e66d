"""Checks of the credit ledger."""

from __future__ import annotations

from models.credits import CreditAccount, LedgerEntry


async def assert_ledger_matches(user_id) -> None:
    account = await CreditAccount.get(user_id=user_id)
    entries = await LedgerEntry.filter(user_id=user_id)
    assert sum(e.amount for e in entries) == account.balance - account.reserved
    assert sum(e.held for e in entries) == account.reserved
    assert account.reserved >= 0 and account.balance >= account.reserved
