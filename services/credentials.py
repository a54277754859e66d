"""Whether credentials that were good are still good: the re-check of callers that hold a
credential for long (an open socket), many at once.

A credential stays good while its account exists, its API key (if it is one) is not revoked,
and its token (if it is one) has not expired; the account's role can change meanwhile. All is
read from the database, so a change written there by any process, or by hand, is seen. Only
what changed comes back: with nothing changed the answer is empty, however many credentials
were asked about, so an idle re-check costs the database one indexed lookup per account and
key, and the caller almost nothing."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import orjson
from tortoise import connections

from models.user import Role
from services.errors import AuthFailure, Unauthenticated

# What a caller is told when a credential that worked stops working.
_ENDED = {
    AuthFailure.EXPIRED: "The token has expired; sign in again.",
    AuthFailure.REVOKED: "This API key was revoked.",
    AuthFailure.UNKNOWN_USER: "The account of this credential no longer exists.",
}

# The accounts, of those given with the role they had, that are gone (role NULL) or whose role
# is another now; and the keys, of those given, that are revoked or gone. The ids go as one
# JSON parameter (encoded in C, however many; asyncpg's arrays cost ~1 µs of Python per id),
# `json` rather than `jsonb` on PostgreSQL: read once, it need not be parsed into a tree.
_ROLES_CHANGED = {
    "postgres": """
        SELECT given.key AS id, users.role FROM json_each_text($1::json) AS given
        LEFT JOIN users ON users.id = given.key::uuid
        WHERE users.id IS NULL OR users.role <> given.value""",
    "sqlite": """
        SELECT given.key AS id, users.role FROM json_each(?) AS given
        LEFT JOIN users ON users.id = given.key
        WHERE users.id IS NULL OR users.role <> given.value""",
}
_KEYS_ENDED = {
    "postgres": """
        SELECT given.value AS id FROM json_array_elements_text($1::json) AS given
        LEFT JOIN api_keys ON api_keys.id = given.value::uuid
        WHERE api_keys.id IS NULL OR api_keys.revoked_at IS NOT NULL""",
    "sqlite": """
        SELECT given.value AS id FROM json_each(?) AS given
        LEFT JOIN api_keys ON api_keys.id = given.value
        WHERE api_keys.id IS NULL OR api_keys.revoked_at IS NOT NULL""",
}


@dataclass(frozen=True, slots=True)
class Credential:
    """What a caller authenticated with: whose, through which API key (None for a token), and
    until when (a token's `exp`, seconds since the epoch; None: keys do not expire)."""

    user_id: uuid.UUID
    api_key_id: uuid.UUID | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        # Plain uuid.UUIDs, whatever the database driver returned (asyncpg has a class of its
        # own, which orjson cannot encode).
        object.__setattr__(self, "user_id", _uuid(self.user_id))
        if self.api_key_id is not None:
            object.__setattr__(self, "api_key_id", _uuid(self.api_key_id))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(slots=True)
class Changes:
    """What changed since credentials were checked: accounts with another role now, or gone
    (None); API keys revoked (or gone)."""

    roles: dict[uuid.UUID, Role | None] = field(default_factory=dict)
    ended_keys: set[uuid.UUID] = field(default_factory=set)


def ended(reason: AuthFailure) -> Unauthenticated:
    """The refusal of a credential that ended for `reason` (expired, revoked, unknown user)."""
    return Unauthenticated(_ENDED[reason], reason)


async def changes(roles: Mapping[uuid.UUID, Role], key_ids: Collection[uuid.UUID]) -> Changes:
    """Of the accounts in `roles` (with the role each had) and of the keys in `key_ids`, those
    that changed: two statements, whatever their number."""
    found = Changes()
    connection = connections.get("default")
    dialect = "postgres" if connection.capabilities.dialect == "postgres" else "sqlite"
    if roles:
        given = orjson.dumps(roles, option=orjson.OPT_NON_STR_KEYS).decode()
        for row in await connection.execute_query_dict(_ROLES_CHANGED[dialect], [given]):
            found.roles[_uuid(row["id"])] = Role(row["role"]) if row["role"] else None
    if key_ids:
        given = orjson.dumps(list(key_ids)).decode()
        for row in await connection.execute_query_dict(_KEYS_ENDED[dialect], [given]):
            found.ended_keys.add(_uuid(row["id"]))
    return found


def _uuid(value: object) -> uuid.UUID:
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, uuid.UUID):
        return uuid.UUID(bytes=value.bytes)
    return uuid.UUID(str(value))
