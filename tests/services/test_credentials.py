"""Re-checking credentials that were good: the account's current role, a deleted account, a
revoked key and an expired token, for many credentials in a few statements."""

from __future__ import annotations

import time
import uuid

from models.user import Role, User
from services import api_keys, credentials
from services.credentials import Credential, Standing
from services.errors import AuthFailure
from tests.support.statements import statements


async def test_each_way_a_credential_ends_and_the_role_of_those_that_did_not(backend, make_user):
    user, admin = await make_user(), await make_user(role=Role.ADMIN)
    live, _ = await api_keys.create(user, "live", backend.settings)
    revoked, _ = await api_keys.create(user, "revoked", backend.settings)
    await api_keys.revoke(user, revoked.id)
    now = time.time()
    cases = {
        Credential(user.id, expires_at=now + 60): Standing(None, Role.USER),
        Credential(admin.id, expires_at=now + 60): Standing(None, Role.ADMIN),
        Credential(user.id, api_key_id=live.id): Standing(None, Role.USER),
        Credential(user.id, api_key_id=revoked.id): Standing(AuthFailure.REVOKED),
        Credential(user.id, api_key_id=uuid.uuid4()): Standing(AuthFailure.REVOKED),
        Credential(user.id, expires_at=now - 1): Standing(AuthFailure.EXPIRED),
        Credential(uuid.uuid4(), expires_at=now + 60): Standing(AuthFailure.UNKNOWN_USER),
    }
    assert await credentials.recheck(list(cases), now) == cases
    assert await credentials.recheck([], now) == {}


async def test_many_credentials_are_rechecked_together(backend, make_user, monkeypatch):
    """A role changed by hand is seen; on PostgreSQL two statements answer for any number of
    credentials, on SQLite a statement per SQLITE_BATCH ids."""
    many = 2 * credentials.SQLITE_BATCH + 7
    users = [
        User(
            id=uuid.uuid4(),
            email=f"many-{uuid.uuid4().hex}@example.com",
            password_hash="x",
            role=Role.USER,
        )
        for _ in range(many)
    ]
    await User.bulk_create(users)
    await User.filter(id=users[0].id).update(role=Role.ADMIN)
    owner = await make_user()
    key, _ = await api_keys.create(owner, "k", backend.settings)
    checked = [Credential(u.id, expires_at=time.time() + 60) for u in users]
    checked.append(Credential(owner.id, api_key_id=key.id))
    with statements(monkeypatch) as seen:
        standings = await credentials.recheck(checked, time.time())
    assert standings[checked[0]] == Standing(None, Role.ADMIN)
    assert all(s == Standing(None, Role.USER) for s in list(standings.values())[1:])
    if backend.name == "postgres":
        assert len(seen) == 2, seen
