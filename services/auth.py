"""Accounts, passwords and bearer tokens."""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise import connections
from tortoise.exceptions import IntegrityError

from models.user import Role, User
from services import api_keys, credentials, credits, login_guard
from services.credentials import Credential
from services.errors import AuthFailure, BadUserInput, Conflict, NotFound, Unauthenticated
from services.rate_limits import Counters
from services.sql import dialect_sql
from services.unit_of_work import atomic
from settings import Settings

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("kiln-timing-equaliser")


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL.match(email):
        raise BadUserInput("Enter a valid email address.", field="email")
    return email


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadUserInput(
            f"Passwords must be {MIN_PASSWORD} to {MAX_PASSWORD} characters.", field="password"
        )


async def register(
    email: str, password: str, settings: Settings, *, role: Role = Role.USER
) -> User:
    email = normalise_email(email)
    _check_password(password)
    # argon2 is deliberately slow: hash off the event loop.
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    try:
        async with atomic():
            user = await User.create(email=email, password_hash=password_hash, role=role)
            await credits.open_account(user.id, settings.signup_grant)
    except IntegrityError as error:
        raise Conflict("An account with this email already exists.") from error
    return user


async def login(
    email: str,
    password: str,
    settings: Settings | None = None,
    counters: Counters | None = None,
) -> User:
    """Without `counters` (scripts, tests of the happy path) failures are not counted."""
    try:
        email = normalise_email(email)
    except BadUserInput:
        email = ""
    if email and counters is not None and settings is not None:
        await login_guard.attempt(counters, email, settings)
    user = await User.get_or_none(email=email) if email else None
    # An over-long password is simply wrong, but still costs a verification (same timing).
    candidate = password if len(password) <= MAX_PASSWORD else ""
    ok = await asyncio.to_thread(_verify, user.password_hash if user else _DUMMY_HASH, candidate)
    if user is None or not ok or not candidate:
        raise Unauthenticated("Wrong email or password.", AuthFailure.INVALID)
    if counters is not None:
        await login_guard.succeeded(counters, email)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(user: User, settings: Settings) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "role": user.role.value,
        "iat": now,
        "exp": now + timedelta(seconds=settings.jwt_ttl_seconds),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


@functools.lru_cache(maxsize=4096)
def _verified_claims(token: str, secret: str) -> tuple[uuid.UUID, float]:
    """The subject and expiry of a token whose signature checks out. Cached: a client sends
    the same token with every request, and verifying it again each time was a visible part
    of a request's cost. Failures are not cached (they raise); expiry is checked by the
    caller on every use, so a cached token still stops working when it expires."""
    claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    return uuid.UUID(claims["sub"]), float(claims["exp"])


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the account as it is now, and the credential it used (what a
    long-lived caller, a socket, is re-checked by: services/credentials.py)."""

    user: User
    credential: Credential


async def authenticate(authorization: str | None, settings: Settings) -> User | None:
    """The user of an `Authorization: Bearer ...` value; None when there is none.
    A present but invalid credential is an error, never silently anonymous."""
    caller = await authenticate_caller(authorization, settings)
    return caller.user if caller is not None else None


async def authenticate_caller(authorization: str | None, settings: Settings) -> Caller | None:
    """`authenticate`, with the credential. Refusals say why (Unauthenticated.reason)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Use 'Authorization: Bearer <token>'.", AuthFailure.MALFORMED)
    if len(token) > 4096:
        raise Unauthenticated("Malformed token.", AuthFailure.MALFORMED)
    if api_keys.looks_like_key(token):
        owner, key_id = await api_keys.owner_of(token, settings)
        return Caller(owner, Credential(owner.id, api_key_id=key_id))
    try:
        user_id, expires = _verified_claims(token, settings.jwt_secret)
    except jwt.ExpiredSignatureError as error:  # checked after the signature
        raise credentials.ended(AuthFailure.EXPIRED) from error
    except jwt.InvalidSignatureError as error:
        raise Unauthenticated("Invalid token.", AuthFailure.INVALID) from error
    except jwt.DecodeError as error:  # not a JWT at all
        raise Unauthenticated("Malformed token.", AuthFailure.MALFORMED) from error
    except (jwt.PyJWTError, ValueError) as error:  # a claim missing or not what we issue
        raise Unauthenticated("Invalid token.", AuthFailure.INVALID) from error
    credential = Credential(user_id, expires_at=expires)
    if credential.expired(time.time()):
        raise credentials.ended(AuthFailure.EXPIRED)
    user = await _user_by_id(user_id)
    if user is None:
        raise credentials.ended(AuthFailure.UNKNOWN_USER)
    return Caller(user, credential)


_USER_BY_ID = "SELECT * FROM users WHERE id = ?"


async def _user_by_id(user_id: uuid.UUID) -> User | None:
    """`User.get_or_none(id=...)` without building the query each time: it runs for every
    authenticated request, and the ORM's query building cost more than the query."""
    connection = connections.get("default")
    rows = await connection.execute_query_dict(dialect_sql(_USER_BY_ID, connection), [str(user_id)])
    return User._init_from_db(**rows[0]) if rows else None


async def create_admin(email: str, password: str, settings: Settings) -> User:
    """Create an admin, or promote an existing account (for the `manage.py` command)."""
    existing = await User.get_or_none(email=normalise_email(email))
    if existing is not None:
        existing.role = Role.ADMIN
        await existing.save(update_fields=["role"])
        return existing
    return await register(email, password, settings, role=Role.ADMIN)


async def set_priority(user_id: uuid.UUID, priority: bool) -> User:
    """Premium/priority accounts: higher rate limits, generations on the priority queue."""
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise NotFound("User not found.")
    user.priority = priority
    await user.save(update_fields=["priority"])
    return user
