"""Re-checking credentials that were good: an account whose role changed or that is gone, a
revoked key; only what changed comes back, for any number of credentials in two statements."""

from __future__ import annotations

import time
import uuid

from models.api_key import ApiKey
from models.user import Role, User
from services import api_keys, credentials
from services.credentials import Changes, Credential
from services.errors import AuthFailure
from tests.support.statements import statements


async def test_only_what_changed_comes_back(backend, make_user):
    user, admin, demoted = await make_user(), await make_user(role=Role.ADMIN), await make_user()
    live, _ = await api_keys.create(user, "live", backend.settings)
    revoked, _ = await api_keys.create(user, "revoked", backend.settings)
    await api_keys.revoke(user, revoked.id)
    gone = uuid.uuid4()
    roles = {user.id: Role.USER, admin.id: Role.ADMIN, demoted.id: Role.ADMIN, gone: Role.USER}
    never = uuid.uuid4()
    found = await credentials.changes(roles, [live.id, revoked.id, never])
    assert found.roles == {demoted.id: Role.USER, gone: None}
    assert found.ended_keys == {revoked.id, never}
    assert await credentials.changes({}, []) == Changes()


async def test_many_credentials_are_rechecked_in_two_statements(backend, make_user, monkeypatch):
    """A role changed by hand is seen among thousands; nothing else comes back."""
    many = 3000
    users = [
        User(id=uuid.uuid4(), email=f"many-{uuid.uuid4().hex}@example.com", password_hash="x")
        for _ in range(many)
    ]
    await User.bulk_create(users)
    await User.filter(id=users[7].id).update(role=Role.ADMIN)
    owner = await make_user()
    key, _ = await api_keys.create(owner, "k", backend.settings)
    roles = {u.id: Role.USER for u in users} | {owner.id: Role.USER}
    with statements(monkeypatch) as seen:
        found = await credentials.changes(roles, [key.id])
    assert found == Changes({users[7].id: Role.ADMIN}, set())
    if backend.name == "postgres":
        assert len(seen) == 2, seen


def test_a_token_expires_at_its_exp():
    now = time.time()
    assert not Credential(uuid.uuid4(), expires_at=now + 1).expired(now)
    assert Credential(uuid.uuid4(), expires_at=now).expired(now)
    assert not Credential(uuid.uuid4(), api_key_id=uuid.uuid4()).expired(now)
    assert credentials.ended(AuthFailure.REVOKED).reason is AuthFailure.REVOKED


async def test_credentials_of_rows_read_from_any_database_can_be_rechecked(backend, make_user):
    """asyncpg returns ids of a UUID class of its own: a credential keeps plain ones."""
    user = await make_user()
    created, _ = await api_keys.create(user, "k", backend.settings)
    key = await ApiKey.get(id=created.id)  # as read back, not as created
    credential = Credential(key.user_id, api_key_id=key.id)
    assert type(credential.user_id) is uuid.UUID and type(credential.api_key_id) is uuid.UUID
    found = await credentials.changes({credential.user_id: Role.USER}, [credential.api_key_id])
    assert found == Changes()
