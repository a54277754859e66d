"""Three failed logins for an email within the window: the fourth attempt is RATE_LIMITED
whatever the password; counters shared through Redis agree across processes."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from services import auth
from services.errors import RateLimited, Unauthenticated
from services.rate_limits import MemoryCounters, RedisCounters
from tests.support.services import need, redis_url

PASSWORD = "correct horse battery"


async def test_the_fourth_failed_login_is_rate_limited_even_with_the_right_password(
    backend, make_user
):
    user = await make_user()
    counters = MemoryCounters()
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await auth.login(user.email, "wrong password", backend.settings, counters)
    with pytest.raises(RateLimited) as raised:
        await auth.login(user.email, PASSWORD, backend.settings, counters)
    assert 800 < raised.value.retry_after <= 900
    # Other emails are not affected; the same email in another case is the same account.
    other = await make_user()
    assert (await auth.login(other.email, PASSWORD, backend.settings, counters)).id == other.id
    with pytest.raises(RateLimited):
        await auth.login(user.email.upper(), PASSWORD, backend.settings, counters)


async def test_a_success_clears_the_failures(backend, make_user):
    user = await make_user()
    counters = MemoryCounters()
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await auth.login(user.email, "wrong password", backend.settings, counters)
    await auth.login(user.email, PASSWORD, backend.settings, counters)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await auth.login(user.email, "wrong password", backend.settings, counters)
    with pytest.raises(RateLimited):
        await auth.login(user.email, PASSWORD, backend.settings, counters)


async def test_processes_sharing_redis_agree(backend, make_user):
    need("redis")
    user = await make_user()
    prefix = f"test:{uuid.uuid4().hex}"
    clients = [aioredis.Redis.from_url(redis_url(12)) for _ in range(3)]
    try:
        for client in clients:  # three "processes", one failure each
            with pytest.raises(Unauthenticated):
                await auth.login(
                    user.email, "nope nope", backend.settings, RedisCounters(client, prefix)
                )
        with pytest.raises(RateLimited):
            await auth.login(
                user.email, PASSWORD, backend.settings, RedisCounters(clients[0], prefix)
            )
    finally:
        for client in clients:
            await client.aclose()


async def test_over_long_passwords_are_just_wrong(backend, make_user):
    user = await make_user()
    with pytest.raises(Unauthenticated):
        await auth.login(user.email, "x" * 100_000)
