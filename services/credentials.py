"""Whether credentials that were good are still good: the re-check of callers that hold a
credential for long (an open socket), many at once in a few statements.

A credential stays good while its account exists, its API key (if it is one) is not revoked,
and its token (if it is one) has not expired. The account's current role comes back with the
answer, so a caller that lost a role can lose what needed it. Everything is read from the
database, so a change written there by any process, or by hand, is seen."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient

from models.user import Role
from services.errors import AuthFailure, Unauthenticated

# What a caller is told when a credential that worked stops working.
_ENDED = {
    AuthFailure.EXPIRED: "The token has expired; sign in again.",
    AuthFailure.REVOKED: "This API key was revoked.",
    AuthFailure.UNKNOWN_USER: "The account of this credential no longer exists.",
}
# Ids per statement on SQLite (it binds each one; PostgreSQL takes them all as one array).
SQLITE_BATCH = 500


@dataclass(frozen=True, slots=True)
class Credential:
    """What a caller authenticated with: whose, through which API key (None for a token), and
    until when (a token's `exp`, seconds since the epoch; None: keys do not expire)."""

    user_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Standing:
    """A credential's state now: `ended` says why it no longer works (None while it does), and
    `role` is its account's role while it does."""

    ended: AuthFailure | None
    role: Role | None = None


def ended(reason: AuthFailure) -> Unauthenticated:
    """The refusal of a credential that ended for `reason` (expired, revoked, unknown user)."""
    return Unauthenticated(_ENDED[reason], reason)


async def recheck(credentials: Collection[Credential], now: float) -> dict[Credential, Standing]:
    """The standing of each credential: two statements on PostgreSQL however many there are
    (the accounts by id with their role, the live keys by id)."""
    if not credentials:
        return {}
    roles = await _roles({c.user_id for c in credentials})
    live_keys = await _live_keys({c.api_key_id for c in credentials if c.api_key_id is not None})
    return {c: standing(c, roles.get(c.user_id), live_keys, now) for c in credentials}


def standing(
    credential: Credential, role: Role | None, live_keys: set[uuid.UUID], now: float
) -> Standing:
    if role is None:
        return Standing(AuthFailure.UNKNOWN_USER)
    if credential.api_key_id is not None and credential.api_key_id not in live_keys:
        return Standing(AuthFailure.REVOKED)
    if credential.expired(now):
        return Standing(AuthFailure.EXPIRED)
    return Standing(None, role)


async def _roles(user_ids: set[uuid.UUID]) -> dict[uuid.UUID, Role]:
    rows = await _select_by_ids("SELECT id, role FROM users WHERE id", "", user_ids)
    return {_uuid(row["id"]): Role(str(row["role"])) for row in rows}


async def _live_keys(key_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    rows = await _select_by_ids(
        "SELECT id FROM api_keys WHERE id", " AND revoked_at IS NULL", key_ids
    )
    return {_uuid(row["id"]) for row in rows}


async def _select_by_ids(head: str, tail: str, ids: set[uuid.UUID]) -> list[dict[str, object]]:
    """`{head} IN (ids){tail}`: one statement with an array on PostgreSQL, batches on SQLite."""
    if not ids:
        return []
    connection: BaseDBAsyncClient = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        return list(
            await connection.execute_query_dict(f"{head} = ANY($1::uuid[]){tail}", [list(ids)])
        )
    rows: list[dict[str, object]] = []
    for batch in _batches(ids, SQLITE_BATCH):
        marks = ",".join("?" * len(batch))
        rows += await connection.execute_query_dict(
            f"{head} IN ({marks}){tail}", [str(i) for i in batch]
        )
    return rows


def _batches(items: Iterable[uuid.UUID], size: int) -> Iterator[list[uuid.UUID]]:
    batch: list[uuid.UUID] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
