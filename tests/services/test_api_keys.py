"""API keys: shown once, stored as a keyed hash, usable as a bearer token, revocable by their
owner only."""

from __future__ import annotations

import uuid

import pytest

from models.api_key import ApiKey
from services import api_keys, auth
from services.errors import AuthFailure, BadUserInput, Conflict, NotFound, Unauthenticated


async def test_a_key_is_shown_once_stored_hashed_and_authenticates(backend, make_user):
    user = await make_user()
    row, secret = await api_keys.create(user, "  ci runner ", backend.settings)
    assert secret.startswith("kiln_") and len(secret) > 40
    assert row.name == "ci runner" and secret.startswith(row.prefix)
    stored = await ApiKey.get(id=row.id)
    assert secret not in (stored.key_hash, stored.prefix, stored.name)
    assert stored.key_hash == api_keys.hash_key(secret, backend.settings)
    assert stored.last_used_at is None

    caller = await auth.authenticate(f"Bearer {secret}", backend.settings)
    assert caller is not None and caller.id == user.id
    assert (await ApiKey.get(id=row.id)).last_used_at is not None
    assert [k.id for k in await api_keys.list_keys(user)] == [row.id]


async def test_the_pepper_is_part_of_the_hash(backend, make_user):
    user = await make_user()
    _, secret = await api_keys.create(user, "k", backend.settings)
    other_pepper = backend.settings.model_copy(update={"api_key_pepper": "x" * 40})
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {secret}", other_pepper)


async def test_revoked_and_unknown_keys_are_refused(backend, make_user):
    user, other = await make_user(), await make_user()
    row, secret = await api_keys.create(user, "k", backend.settings)
    with pytest.raises(NotFound):
        await api_keys.revoke(other, row.id)  # not theirs: looks absent
    await api_keys.revoke(user, row.id)
    with pytest.raises(NotFound):
        await api_keys.revoke(user, row.id)
    refusals = {
        secret: AuthFailure.REVOKED,
        "kiln_" + "A" * 43: AuthFailure.INVALID,
        "kiln_": AuthFailure.INVALID,
    }
    for token, reason in refusals.items():
        with pytest.raises(Unauthenticated) as raised:
            await auth.authenticate(f"Bearer {token}", backend.settings)
        assert raised.value.reason is reason
    assert await api_keys.list_keys(user) == []
    with pytest.raises(NotFound):
        await api_keys.revoke(user, uuid.uuid4())


async def test_names_and_counts_are_capped(backend, make_user):
    user = await make_user()
    for name in ("", "   ", "x" * 101):
        with pytest.raises(BadUserInput):
            await api_keys.create(user, name, backend.settings)
    few = backend.settings.model_copy(update={"max_api_keys_per_user": 2})
    await api_keys.create(user, "a", few)
    await api_keys.create(user, "b", few)
    with pytest.raises(Conflict):
        await api_keys.create(user, "c", few)
