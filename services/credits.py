"""Credits: every change to an account is one guarded update plus one append-only ledger entry,
in the same transaction. Holds of a generation are captured or released exactly once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models.credits import CreditAccount, LedgerEntry, LedgerKind
from models.generation import FINAL_STATUSES, Generation, GenerationStatus, HoldState
from realtime import channels
from services.errors import BadUserInput, Conflict, InsufficientCredits, NotFound
from services.events import publish_after_commit
from services.pagination import Page, newest_first_by_id
from services.sql import dialect_sql
from services.unit_of_work import atomic, joined


@dataclass(frozen=True)
class Balance:
    available: int
    reserved: int
    # The account's own sequence, bumped by every move of the account in the statement that
    # moves it: clients keep the balance with the newest version.
    version: int = 0

    @property
    def total(self) -> int:
        return self.available + self.reserved

    def to_message(self) -> dict[str, int]:
        return {"available": self.available, "reserved": self.reserved, "version": self.version}


async def get_balance(user_id: uuid.UUID) -> Balance:
    # The balance and its version live in one row and every move changes both in one UPDATE,
    # so one read sees them as the same move left them: never a version newer than its
    # balance (which would hide the next move's message from subscribers, who drop versions
    # they have seen), nor older (a message repeating what they have).
    account = await CreditAccount.get_or_none(user_id=user_id)
    if account is None:
        raise NotFound("No credit account.")
    return Balance(account.balance - account.reserved, account.reserved, account.version)


async def list_transactions(
    user_id: uuid.UUID, *, first: int, after: str | None
) -> Page[LedgerEntry]:
    """Newest first; the cursor carries the entry id, which only grows."""
    query = LedgerEntry.filter(user_id=user_id)
    return await newest_first_by_id(query, first=first, after=after)


async def open_account(user_id: uuid.UUID, grant: int) -> None:
    async with atomic():
        await CreditAccount.create(user_id=user_id, balance=0, reserved=0)
        if grant > 0:
            await _move(
                user_id,
                LedgerKind.GRANT,
                amount=grant,
                reference="signup",
                unique_key=f"signup:{user_id}",
            )


async def adjust(
    user_id: uuid.UUID, amount: int, reason: str, *, idempotency_key: str | None = None
) -> Balance:
    """An admin's correction. Never takes available credit below zero; the reason is kept
    as the entry's reference. With a key, a repeat of the same adjustment is a no-op."""
    if amount == 0 or abs(amount) > 1_000_000:
        raise BadUserInput("amount must be non-zero and at most 1000000.", field="amount")
    reason = reason.strip()
    if not 1 <= len(reason) <= 255:
        raise BadUserInput("reason must be 1 to 255 characters.", field="reason")
    unique_key = None
    if idempotency_key is not None:
        if not 1 <= len(idempotency_key) <= 200:
            raise BadUserInput(
                "idempotencyKey must be 1 to 200 characters.", field="idempotencyKey"
            )
        unique_key = f"adjust:{user_id}:{idempotency_key}"
    if not await CreditAccount.exists(user_id=user_id):
        raise NotFound("User not found.")
    try:
        async with atomic():
            return await _move(
                user_id,
                LedgerKind.ADJUSTMENT,
                amount=amount,
                reference=reason,
                unique_key=unique_key,
            )
    except IntegrityError:
        previous = await LedgerEntry.get_or_none(unique_key=unique_key)
        if previous is None:
            raise
        if (previous.amount, previous.reference) != (amount, reason):
            raise Conflict(
                "This idempotency key was already used for a different adjustment."
            ) from None
        return await get_balance(user_id)


async def purchase(
    user_id: uuid.UUID, credits: int, transaction_id: str, *, also_known_as: str | None = None
) -> bool:
    """Grant purchased credits once per payment. `transaction_id` is the grant's unique key;
    `also_known_as`, another id of the same payment (a Checkout Session's payment intent), is
    kept as the entry's reference, and a grant already made under it (as key or reference)
    makes this one a duplicate too. False when already granted."""
    unique_key = f"payment:{transaction_id}"
    already = Q(unique_key=unique_key)
    if also_known_as:
        already |= Q(unique_key=f"payment:{also_known_as}") | Q(
            user_id=user_id, kind=LedgerKind.PURCHASE, reference=also_known_as[:255]
        )
    if await LedgerEntry.filter(already).exists():
        return False
    if not await CreditAccount.exists(user_id=user_id):
        raise NotFound("User not found.")
    try:
        async with atomic():
            await _move(
                user_id,
                LedgerKind.PURCHASE,
                amount=credits,
                reference=(also_known_as or transaction_id)[:255],
                unique_key=unique_key,
            )
    except IntegrityError:
        if await LedgerEntry.exists(unique_key=unique_key):
            return False  # a concurrent delivery of the same payment won
        raise
    return True


@dataclass(frozen=True)
class Mismatch:
    user_id: uuid.UUID
    balance: int
    ledger_sum: int
    reserved: int
    ledger_held: int


@dataclass(frozen=True)
class Audit:
    accounts: int
    mismatches: list[Mismatch]

    @property
    def ok(self) -> bool:
        return not self.mismatches


_AUDIT = """
SELECT a.user_id, a.balance, a.reserved,
       COALESCE(SUM(l.amount), 0) AS ledger_available,
       COALESCE(SUM(l.held), 0) AS ledger_held
FROM credit_accounts a LEFT JOIN ledger_entries l ON l.user_id = a.user_id
GROUP BY a.user_id, a.balance, a.reserved
"""


async def audit() -> Audit:
    """Recompute every account from its ledger. The ledger's available sum must equal
    balance - reserved and its held sum must equal reserved."""
    _, rows = await connections.get("default").execute_query(_AUDIT)
    mismatches = []
    for row in rows:
        balance, reserved = int(row["balance"]), int(row["reserved"])
        available, held = int(row["ledger_available"]), int(row["ledger_held"])
        if available != balance - reserved or held != reserved:
            mismatches.append(
                Mismatch(uuid.UUID(str(row["user_id"])), balance, available + held, reserved, held)
            )
    return Audit(accounts=len(rows), mismatches=mismatches)


async def settle_open_holds() -> int:
    """Sweeper: a finished generation whose hold is still open gets it captured (COMPLETED)
    or released (anything else). Normally the transition settles it in the same
    transaction; this is the safety net."""
    settled = 0
    open_holds = await Generation.filter(hold=HoldState.HELD, status__in=list(FINAL_STATUSES)).only(
        "id", "status"
    )
    for generation in open_holds:
        if generation.status is GenerationStatus.COMPLETED:
            settled += await capture_for(generation.id)
        else:
            settled += await release_for(generation.id)
    return settled


async def reserve_for(generation: Generation) -> None:
    """Hold the generation's cost for its current attempt (inside the caller's transaction)."""
    if generation.cost:
        await _move(
            generation.user_id,
            LedgerKind.RESERVE,
            amount=-generation.cost,
            held=generation.cost,
            generation_id=generation.id,
            unique_key=_hold_key(generation, "reserve"),
        )


async def add_to_hold(generation: Generation, amount: int, step: str) -> None:
    """Hold `amount` more for this attempt (a workflow's round of changes), inside the
    caller's transaction, which also raises the generation's cost by as much."""
    await _move(
        generation.user_id,
        LedgerKind.RESERVE,
        amount=-amount,
        held=amount,
        generation_id=generation.id,
        reference=step,
        unique_key=_hold_key(generation, f"reserve:{step}"),
    )


async def capture_for(generation_id: uuid.UUID, charge: int | None = None) -> bool:
    """Capture the hold; with `charge` below the cost (a batch partly delivered), capture
    that much and release the rest, in the same step."""
    return await _settle(generation_id, HoldState.CAPTURED, charge)


async def release_for(generation_id: uuid.UUID) -> bool:
    return await _settle(generation_id, HoldState.RELEASED, 0)


async def _settle(generation_id: uuid.UUID, outcome: HoldState, charge: int | None) -> bool:
    """Settle the open hold. Whoever flips HELD first wins; everyone else no-ops. Joins the
    caller's transaction (a completion or failure) instead of opening a savepoint in it."""
    async with joined():
        connection = connections.get("default")
        # The flip returns what the entries need: one round trip instead of UPDATE + SELECT.
        rows = await connection.execute_query_dict(
            dialect_sql(_FLIP_HOLD, connection),
            [outcome.value, str(generation_id), HoldState.HELD.value],
        )
        if not rows:
            return False
        user_id = _uuid(rows[0]["user_id"])
        cost, attempts = int(rows[0]["cost"]), int(rows[0]["attempts"])
        captured = cost if charge is None else max(0, min(charge, cost))
        released = cost - captured
        if captured:
            await _move(
                user_id,
                LedgerKind.CAPTURE,
                amount=0,
                held=-captured,
                generation_id=generation_id,
                unique_key=hold_key(generation_id, attempts, "capture"),
            )
        if released:
            await _move(
                user_id,
                LedgerKind.RELEASE,
                amount=released,
                held=-released,
                generation_id=generation_id,
                unique_key=hold_key(generation_id, attempts, "release"),
            )
        return True


_FLIP_HOLD = """
UPDATE generations SET hold = ? WHERE id = ? AND hold = ? RETURNING user_id, cost, attempts
"""


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _hold_key(generation: Generation, what: str) -> str:
    return hold_key(generation.id, generation.attempts, what)


# The ledger key of a step of a generation's hold, per attempt: a step is recorded once per
# attempt however often it is tried (the entries' unique key refuses a second one).
_HOLD_KEY = "gen:{id}:{attempts}:{what}"


def hold_key(generation_id: uuid.UUID, attempts: int, what: str) -> str:
    return _HOLD_KEY.format(id=generation_id, attempts=attempts, what=what)


def hold_key_sql(generation_id: str, attempts: str, what: str) -> str:
    """`hold_key` as a PostgreSQL expression of these SQL expressions (columns of a CTE)."""
    return (
        "'"
        + _HOLD_KEY.format(
            id=f"' || {generation_id}::text || '", attempts=f"' || {attempts}::text || '", what=what
        )
        + "'"
    )


def spend_guard(amount: str, alias: str = "") -> str:
    """The condition of every move that spends `amount` (an SQL expression) of available
    credit: available credit never goes below zero."""
    a = alias + "." if alias else ""
    return f"{a}balance - {a}reserved >= {amount}"


def account_moved(alias: str = "") -> str:
    """The SET clause every move of an account carries: it bumps the account's version (see
    Balance)."""
    return f"version = {alias + '.' if alias else ''}version + 1"


ACCOUNT_MOVED = account_moved()


# PostgreSQL: an account's move and its ledger entry as two data-modifying CTEs, `account`
# and `entry`, of one statement (one round trip). The entry reads the account's new state,
# so the UPDATE (and its row lock) comes first; an account that does not match (missing,
# or not enough credit) inserts no entry. Other modules' one-statement changes (a new
# generation with its hold, a completion with its capture) are built from these too.
def account_cte(
    *, balance: str, reserved: str, user_id: str, guard: str | None = None, using: str = ""
) -> str:
    """`account AS (...)`: the account of `user_id` moved by these SQL expressions, its new
    state returned. `using` lists other CTEs the expressions read."""
    where = f"a.user_id = {user_id}" + (f" AND {guard}" if guard else "")
    return (
        f"account AS (UPDATE credit_accounts a SET balance = a.balance + {balance}, "
        f"reserved = a.reserved + {reserved}, {account_moved('a')}"
        f"{' FROM ' + using if using else ''} WHERE {where} "
        "RETURNING a.balance, a.reserved, a.version)"
    )


def entry_cte(
    *,
    user_id: str,
    kind: str,
    amount: str,
    held: str,
    generation_id: str,
    reference: str,
    unique_key: str,
    created_at: str,
    using: str = "account",
) -> str:
    """`entry AS (...)`: the ledger entry of the `account` CTE's move."""
    return (
        "entry AS (INSERT INTO ledger_entries (user_id, kind, amount, held, balance_after, "
        "generation_id, reference, unique_key, created_at) "
        f"SELECT {user_id}, {kind}, {amount}, {held}, account.balance - account.reserved, "
        f"{generation_id}, {reference}, {unique_key}, {created_at} FROM {using} RETURNING id)"
    )


# What a one-statement change selects of the `account` CTE for `announce_moved`.
MOVED_COLUMNS = (
    "account.balance AS kiln_balance, account.reserved AS kiln_reserved, "
    "account.version AS kiln_version"
)


def announce_moved(user_id: uuid.UUID, row: dict[str, Any]) -> Balance:
    """`announce_balance` for the MOVED_COLUMNS of a one-statement change's row."""
    return announce_balance(
        user_id, int(row["kiln_balance"]), int(row["kiln_reserved"]), int(row["kiln_version"])
    )


def hold_ctes(*, cost: str, user_id: str, generation: str, created_at: str) -> tuple[str, str]:
    """`reserve_for` as the `account` and `entry` CTEs: `cost` held from `user_id`'s
    available credit (matching nothing when there is not enough), its entry keyed by the
    attempt of `generation` (a CTE with `id` and `attempts` that the caller writes between
    the two: it may read `account`, so that nothing is written without the hold)."""
    account = account_cte(balance="0", reserved=cost, user_id=user_id, guard=spend_guard(cost, "a"))
    entry = entry_cte(
        user_id=user_id,
        kind=f"'{LedgerKind.RESERVE.value}'",
        amount=f"-{cost}",
        held=cost,
        generation_id=f"{generation}.id",
        reference="NULL",
        unique_key=hold_key_sql(f"{generation}.id", f"{generation}.attempts", "reserve"),
        created_at=created_at,
        using=f"account, {generation}",
    )
    return account, entry


def capture_ctes(*, generation: str, created_at: str) -> str:
    """`capture_for` (the whole cost) as the `account` and `entry` CTEs, for a `generation`
    CTE (`id`, `user_id`, `cost`, `attempts`) whose statement flipped its hold to CAPTURED.
    A free generation moves nothing."""
    g = generation
    account = account_cte(
        balance=f"-{g}.cost",
        reserved=f"-{g}.cost",
        user_id=f"{g}.user_id",
        guard=f"{g}.cost > 0",
        using=g,
    )
    entry = entry_cte(
        user_id=f"{g}.user_id",
        kind=f"'{LedgerKind.CAPTURE.value}'",
        amount="0",
        held=f"-{g}.cost",
        generation_id=f"{g}.id",
        reference="NULL",
        unique_key=hold_key_sql(f"{g}.id", f"{g}.attempts", "capture"),
        created_at=created_at,
        using=f"{g}, account",
    )
    return f"{account}, {entry}"


# The account's change and its new state in one round trip (PostgreSQL and SQLite >= 3.35
# both know RETURNING); on SQLite the entry follows (no UPDATE inside WITH).
_MOVE = f"""
UPDATE credit_accounts SET balance = balance + ?, reserved = reserved + ?, {ACCOUNT_MOVED}
WHERE user_id = ? RETURNING balance, reserved, version
"""
_MOVE_GUARDED = f"""
UPDATE credit_accounts SET balance = balance + ?, reserved = reserved + ?, {ACCOUNT_MOVED}
WHERE user_id = ? AND {spend_guard("?")} RETURNING balance, reserved, version
"""


def _move_and_record(guard: str | None) -> str:
    account = account_cte(balance="$1", reserved="$2", user_id="$3", guard=guard)
    entry = entry_cte(
        user_id="$3",
        kind="$4::varchar",
        amount="$5::int",
        held="$2",
        generation_id="$6::uuid",
        reference="$7::varchar",
        unique_key="$8::varchar",
        created_at="$9::timestamptz",
    )
    return (
        f"WITH {account}, {entry} "
        "SELECT account.balance, account.reserved, account.version FROM account, entry"
    )


_MOVE_AND_RECORD_GUARDED = _move_and_record(spend_guard("$10", "a"))
_MOVE_AND_RECORD_FREE = _move_and_record(None)


async def _move(
    user_id: uuid.UUID,
    kind: LedgerKind,
    *,
    amount: int,
    held: int = 0,
    generation_id: uuid.UUID | None = None,
    reference: str | None = None,
    unique_key: str | None = None,
) -> Balance:
    """The only code that changes an account. `amount` moves available credit, `held` moves
    reserved credit; the update is guarded so available credit can never go below zero."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        params: list[Any] = [amount + held, held, str(user_id), kind.value, amount]
        params += [str(generation_id) if generation_id else None, reference, unique_key]
        params.append(datetime.now(UTC))
        rows = await connection.execute_query_dict(
            _MOVE_AND_RECORD_GUARDED if amount < 0 else _MOVE_AND_RECORD_FREE,
            [*params, -amount] if amount < 0 else params,
        )
        if not rows:
            await refused(user_id, amount)
        moved = rows[0]
        balance_now, reserved_now = int(moved["balance"]), int(moved["reserved"])
        version = int(moved["version"])
    else:
        balance_now, reserved_now, version = await _move_in_steps(
            connection, user_id, kind, amount, held, generation_id, reference, unique_key
        )
    return announce_balance(user_id, balance_now, reserved_now, version)


def announce_balance(user_id: uuid.UUID, balance: int, reserved: int, version: int) -> Balance:
    """Publish (after commit) the account's state as the move to `version` left it: every
    change to an account says so, also one made by another module's statement (a
    completion's capture runs inside the completion's one statement)."""
    moved = Balance(balance - reserved, reserved, version)
    publish_after_commit(channels.user_credits(user_id), moved.to_message())
    return moved


async def _move_in_steps(
    connection: BaseDBAsyncClient,
    user_id: uuid.UUID,
    kind: LedgerKind,
    amount: int,
    held: int,
    generation_id: uuid.UUID | None,
    reference: str | None,
    unique_key: str | None,
) -> tuple[int, int, int]:
    """SQLite has no UPDATE inside WITH: the account, then its entry."""
    guarded = _MOVE_GUARDED if amount < 0 else _MOVE
    params: list[Any] = [amount + held, held, str(user_id)]
    rows = await connection.execute_query_dict(
        dialect_sql(guarded, connection), [*params, -amount] if amount < 0 else params
    )
    if not rows:
        await refused(user_id, amount)
    balance_now, reserved_now = int(rows[0]["balance"]), int(rows[0]["reserved"])
    await LedgerEntry.create(
        user_id=user_id,
        kind=kind,
        amount=amount,
        held=held,
        balance_after=balance_now - reserved_now,
        generation_id=generation_id,
        reference=reference,
        unique_key=unique_key,
    )
    return balance_now, reserved_now, int(rows[0]["version"])


async def refused(user_id: uuid.UUID, amount: int) -> NoReturn:
    """Why an account did not move: there is none, or not enough available credit."""
    row = await CreditAccount.get_or_none(user_id=user_id)
    if row is None:
        raise NotFound("No credit account.")
    raise InsufficientCredits(needed=-amount, available=row.balance - row.reserved)
