"""The Redis provider limits while their Redis is down or stalled: each process falls back to
its fair share of the limit, leases it could not give back are given back once Redis answers,
and a generation whose provider call ends meanwhile completes."""

from __future__ import annotations

import asyncio
import uuid

from models.generation import GenerationStatus
from services.provider_limits import Lease, ProviderLimit, RedisLimiter, Wait
from tests.support.generations import run_in_process
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import KillsRedisMidCall, provider_deps
from tests.support.redis_clients import RedisClients

LIMITS = {"busy": ProviderLimit(max_concurrent=5), "metered": ProviderLimit(per_minute=4)}


def limiter_on(
    clients: RedisClients,
    prefix: str,
    limits: dict[str, ProviderLimit] = LIMITS,
) -> RedisLimiter:
    client = clients.connect()
    # A stalled Redis is given up on quickly, and asked again soon, so the test stays short.
    return RedisLimiter(client, limits, prefix=prefix, timeout=0.3, retry_interval=0.05)


async def test_without_redis_each_process_keeps_to_its_share(private_redis, worker_clients):
    prefix = f"t:{uuid.uuid4().hex}"
    worker_a = limiter_on(worker_clients, prefix)
    worker_b = limiter_on(worker_clients, prefix)
    # Both processes used the provider recently: each learns it shares the limit with one other.
    for worker in (worker_b, worker_a):
        lease = await worker.acquire("busy")
        assert isinstance(lease, Lease)
        await worker.release(lease)
    private_redis.kill()

    results = [await worker_a.acquire("busy") for _ in range(5)]
    assert [type(r) for r in results] == [Lease, Lease, Lease, Wait, Wait]  # ceil(5 / 2)
    assert all(r.seconds > 0 for r in results if isinstance(r, Wait))
    lease = results[0]
    assert isinstance(lease, Lease)
    await worker_a.release(lease)  # a slot taken locally is given back locally
    assert isinstance(await worker_a.acquire("busy"), Lease)
    assert isinstance(await worker_a.acquire("free"), Lease)  # no limit, no bookkeeping

    # A process that never used the provider knows of no one to share with: the whole limit.
    newcomer = limiter_on(worker_clients, prefix)
    taken = [await newcomer.acquire("metered") for _ in range(5)]
    assert [type(r) for r in taken] == [Lease, Lease, Lease, Lease, Wait]

    private_redis.start()
    assert isinstance(await worker_a.acquire("busy"), Lease)  # Redis decides again


async def test_a_lease_that_could_not_be_given_back_is_given_back_when_redis_answers(
    private_redis, worker_clients
):
    prefix = f"t:{uuid.uuid4().hex}"
    one_slot = {"busy": ProviderLimit(max_concurrent=1)}
    client = worker_clients.connect()
    # Once Redis failed, it is not asked again for a second: calls meanwhile stay local.
    worker_a = RedisLimiter(client, one_slot, prefix=prefix, timeout=0.3, retry_interval=1.0)
    worker_b = limiter_on(worker_clients, prefix, one_slot)
    lease = await worker_a.acquire("busy")
    assert isinstance(lease, Lease)

    private_redis.pause()  # Redis stalls: its keys survive, but it answers nothing
    try:
        # Gives up after its timeout and decides locally (a local slot of its own) ...
        assert isinstance(await worker_a.acquire("busy"), Lease)
        # ... so this release does not reach Redis: the lease is kept, to be given back.
        await worker_a.release(lease)
    finally:
        private_redis.resume()
    assert isinstance(await worker_b.acquire("busy"), Wait)  # the slot is still taken ...

    await asyncio.sleep(1.1)  # past the retry interval: worker A asks Redis again
    assert isinstance(await worker_a.acquire("busy"), Lease)  # ... until A gives it back


async def test_a_generation_holding_a_lease_when_redis_dies_completes(
    make_user, backend, private_redis, worker_clients
):
    client = worker_clients.connect()
    deps = provider_deps(KillsRedisMidCall(private_redis))
    deps.limiter = RedisLimiter(
        client, {"local": ProviderLimit(max_concurrent=2)}, prefix=f"t:{uuid.uuid4().hex}"
    )
    user = await make_user(credits=3)
    row = await run_in_process(user, deps, backend.store)
    assert row.status is GenerationStatus.COMPLETED, row.error_code
    await assert_ledger_matches(user.id)
