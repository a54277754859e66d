from __future__ import annotations

import time
import uuid

import jwt
import pytest

from models.user import Role, User
from services import auth
from services.credentials import Credential
from services.errors import AuthFailure, BadUserInput, Conflict, Unauthenticated


async def test_register_login_and_token_round_trip(backend):
    user = await auth.register("  Ada@Example.COM ", "long enough pw", backend.settings)
    assert user.email == "ada@example.com" and user.role is Role.USER
    assert user.password_hash.startswith("$argon2")
    same = await auth.login("ada@example.com", "long enough pw")
    token = auth.issue_token(same, backend.settings)
    authenticated = await auth.authenticate(f"Bearer {token}", backend.settings)
    assert authenticated is not None and authenticated.id == user.id
    with pytest.raises(Conflict):
        await auth.register("ada@example.com", "another password", backend.settings)


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-email", "long enough pw", "email"),
        ("a@b.co", "short", "password"),
        ("a@b.co", "x" * 257, "password"),
    ],
)
async def test_register_validates(backend, email, password, field):
    with pytest.raises(BadUserInput) as raised:
        await auth.register(email, password, backend.settings)
    assert raised.value.field == field


async def test_wrong_password_and_unknown_email_look_the_same(backend):
    await auth.register("grace@example.com", "long enough pw", backend.settings)
    for email, password in [
        ("grace@example.com", "wrong password"),
        ("nobody@example.com", "long enough pw"),
        ("", ""),
    ]:
        with pytest.raises(Unauthenticated) as raised:
            await auth.login(email, password)
        assert raised.value.message == "Wrong email or password."


async def test_bad_tokens_are_refused(backend):
    user = await auth.register("alan@example.com", "long enough pw", backend.settings)
    forged = jwt.encode({"sub": str(user.id), "exp": 9999999999}, "wrong-secret", algorithm="HS256")
    expired = jwt.encode(
        {"sub": str(user.id), "exp": 1}, backend.settings.jwt_secret, algorithm="HS256"
    )
    for header in [
        f"Bearer {forged}",
        f"Bearer {expired}",
        "Bearer ",
        "Basic abc",
        "Bearer not.a.jwt",
    ]:
        with pytest.raises(Unauthenticated):
            await auth.authenticate(header, backend.settings)
    assert await auth.authenticate(None, backend.settings) is None


async def test_create_admin_creates_or_promotes(backend):
    admin = await auth.create_admin("root@example.com", "long enough pw", backend.settings)
    assert admin.role is Role.ADMIN
    user = await auth.register("promote@example.com", "long enough pw", backend.settings)
    promoted = await auth.create_admin("promote@example.com", "ignored", backend.settings)
    assert promoted.id == user.id and promoted.role is Role.ADMIN


async def test_a_verified_token_still_expires_and_still_needs_its_user(backend, monkeypatch):
    """Signatures are verified once per process; expiry and the account are checked on every
    request all the same."""
    user = await auth.register("barbara@example.com", "long enough pw", backend.settings)
    token = auth.issue_token(user, backend.settings)
    assert await auth.authenticate(f"Bearer {token}", backend.settings) is not None
    later = time.time() + backend.settings.jwt_ttl_seconds + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {token}", backend.settings)
    monkeypatch.undo()
    # A well-signed token of an account that does not exist (any more) is refused.
    ghost = auth.issue_token(User(id=uuid.uuid4(), role=Role.USER), backend.settings)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(f"Bearer {ghost}", backend.settings)


async def test_refusals_say_why(backend):
    """The reason a socket's close names; the message stays what a person reads."""
    user = await auth.register("ida@example.com", "long enough pw", backend.settings)
    expired = jwt.encode(
        {"sub": str(user.id), "exp": 1}, backend.settings.jwt_secret, algorithm="HS256"
    )
    forged = jwt.encode({"sub": str(user.id), "exp": 9999999999}, "y" * 32, algorithm="HS256")
    no_subject = jwt.encode({"exp": 9999999999}, backend.settings.jwt_secret, algorithm="HS256")
    ghost = auth.issue_token(User(id=uuid.uuid4(), role=Role.USER), backend.settings)
    cases = {
        "Basic abc": AuthFailure.MALFORMED,
        "Bearer ": AuthFailure.MALFORMED,
        "Bearer not.a.jwt": AuthFailure.MALFORMED,
        f"Bearer {'x' * 5000}": AuthFailure.MALFORMED,
        f"Bearer {forged}": AuthFailure.INVALID,
        f"Bearer {no_subject}": AuthFailure.INVALID,
        f"Bearer {expired}": AuthFailure.EXPIRED,
        f"Bearer {ghost}": AuthFailure.UNKNOWN_USER,
    }
    for header, reason in cases.items():
        with pytest.raises(Unauthenticated) as raised:
            await auth.authenticate(header, backend.settings)
        assert raised.value.reason is reason, header[:40]
    with pytest.raises(Unauthenticated) as raised:
        await auth.authenticate(f"Bearer {expired}", backend.settings)
    assert raised.value.message == "The token has expired; sign in again."


async def test_a_caller_carries_the_credential_it_used(backend):
    user = await auth.register("joan@example.com", "long enough pw", backend.settings)
    token = auth.issue_token(user, backend.settings)
    caller = await auth.authenticate_caller(f"Bearer {token}", backend.settings)
    assert caller is not None and caller.user.id == user.id
    claims = jwt.decode(token, backend.settings.jwt_secret, algorithms=["HS256"])
    assert caller.credential == Credential(user.id, expires_at=float(claims["exp"]))
    assert await auth.authenticate_caller(None, backend.settings) is None
