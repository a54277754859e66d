"""API keys for server-to-server use. `kiln_` + 43 random URL-safe characters (256 bits),
shown once at creation; usable wherever a bearer token is.

Stored as HMAC-SHA256(pepper, key), not argon2: argon2's slowness protects *guessable*
secrets (passwords) against offline guessing, but a 256-bit random key cannot be guessed
however fast the hash, and a slow hash would put ~50 ms of CPU on every authenticated request.
The keyed hash also lets us find the row by an indexed equality lookup, and the pepper (a
setting, never in the database) means a leaked table alone is useless."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from models.api_key import ApiKey
from models.user import User
from services import credentials
from services.errors import AuthFailure, BadUserInput, Conflict, NotFound, Unauthenticated
from settings import Settings

PREFIX = "kiln_"
MAX_NAME = 100
# last_used_at is written at most this often per key: not a database write per request.
TOUCH_EVERY = timedelta(minutes=1)


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


def hash_key(key: str, settings: Settings) -> str:
    return hmac.new(settings.api_key_pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


async def create(user: User, name: str, settings: Settings) -> tuple[ApiKey, str]:
    """The new key's row and its secret (the only time the secret exists outside the caller)."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise BadUserInput(f"name must be 1 to {MAX_NAME} characters.", field="name")
    live = await ApiKey.filter(user_id=user.id, revoked_at__isnull=True).count()
    if live >= settings.max_api_keys_per_user:
        raise Conflict(
            f"At most {settings.max_api_keys_per_user} API keys; revoke one you no longer use."
        )
    secret = PREFIX + secrets.token_urlsafe(32)
    row = await ApiKey.create(
        user_id=user.id,
        name=name,
        prefix=secret[: len(PREFIX) + 8],
        key_hash=hash_key(secret, settings),
    )
    return row, secret


async def list_keys(user: User) -> list[ApiKey]:
    """The caller's live keys, newest first."""
    return await ApiKey.filter(user_id=user.id, revoked_at__isnull=True).order_by("-created_at")


async def revoke(user: User, key_id: uuid.UUID) -> ApiKey:
    """Only the owner's own keys: anyone else's is NotFound (which says nothing about it)."""
    row = await ApiKey.get_or_none(id=key_id, user_id=user.id, revoked_at__isnull=True)
    if row is None:
        raise NotFound("API key not found.")
    row.revoked_at = datetime.now(UTC)
    await row.save(update_fields=["revoked_at"])
    return row


async def owner_of(key: str, settings: Settings) -> tuple[User, uuid.UUID]:
    """The owner of a live key and the key's id; a key never issued, a revoked key and a key
    whose account is gone are refused, each with its reason."""
    digest = hash_key(key, settings)
    row = await ApiKey.get_or_none(key_hash=digest)
    # The lookup matched on the digest already; compare again in constant time anyway, so a
    # database collation or index quirk can never turn into a timing oracle.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthenticated("Unknown API key.", AuthFailure.INVALID)
    # Only the holder of the secret learns that it was revoked: 256 bits are not guessed.
    if row.revoked_at is not None:
        raise credentials.ended(AuthFailure.REVOKED)
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        await ApiKey.filter(id=row.id).update(last_used_at=now)
    user = await User.get_or_none(id=row.user_id)
    if user is None:
        raise credentials.ended(AuthFailure.UNKNOWN_USER)
    return user, row.id
