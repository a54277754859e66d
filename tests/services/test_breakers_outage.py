"""The Redis breakers while their Redis is down: every call is decided by a breaker in this
process, outcomes that could not be written are sent once Redis answers again, the outage is
logged once and counted, and a generation whose provider call ends meanwhile completes."""

from __future__ import annotations

import logging
import uuid

from prometheus_client import REGISTRY

from models.generation import GenerationStatus
from services import generations
from services.breakers import BreakerPolicy, CircuitState, RedisBreakers
from services.provider_limits import ProviderLimit, RedisLimiter
from tests.support.generations import run_in_process
from tests.support.ledger import assert_ledger_matches
from tests.support.providers import KillsRedisMidCall, provider_deps
from tests.support.redis_clients import RedisClients

POLICY = BreakerPolicy(failure_threshold=3, min_calls=4, window=30, cooldown=30, probe_timeout=5)


def breakers_on(clients: RedisClients, prefix: str) -> RedisBreakers:
    client = clients.connect()
    # A short wait before asking a Redis that failed again, so the test need not sleep long.
    return RedisBreakers(client, POLICY, prefix=prefix, retry_interval=0.05)


def fallbacks(component: str) -> float:
    value = REGISTRY.get_sample_value("kiln_redis_fallbacks_total", {"component": component})
    return value or 0.0


async def test_without_redis_every_call_is_decided_in_the_process(private_redis, worker_clients):
    breakers = breakers_on(worker_clients, f"t:{uuid.uuid4().hex}")
    assert await breakers.allow("acme")
    private_redis.kill()

    # Nothing raises: the process's own breaker counts and decides.
    assert await breakers.allow("acme")
    for _ in range(4):
        await breakers.record("acme", ok=False)
    assert await breakers.state("acme") is CircuitState.OPEN
    assert not await breakers.allow("acme")
    assert await breakers.allow("other")  # still per provider


async def test_outcomes_written_during_the_outage_reach_redis_when_it_answers(
    private_redis, worker_clients
):
    prefix = f"t:{uuid.uuid4().hex}"
    worker_a = breakers_on(worker_clients, prefix)
    worker_b = breakers_on(worker_clients, prefix)
    await worker_a.record("acme", ok=True)
    private_redis.kill()
    for _ in range(4):
        await worker_a.record("acme", ok=False)
    private_redis.start()  # empty: a Redis without persistence forgets everything

    assert await worker_b.state("acme") is CircuitState.CLOSED  # nothing sent yet
    # The next call that reaches Redis sends what was kept, so every process sees it.
    await worker_a.allow("unrelated")
    assert await worker_b.state("acme") is CircuitState.OPEN
    assert not await worker_b.allow("acme")


async def test_an_outage_is_logged_once_and_counted(private_redis, worker_clients, caplog):
    breakers = breakers_on(worker_clients, f"t:{uuid.uuid4().hex}")
    before = fallbacks("provider breakers")
    private_redis.kill()
    with caplog.at_level(logging.INFO, logger="kiln.redis"):
        for _ in range(20):
            await breakers.allow("acme")
            await breakers.record("acme", ok=True)
        private_redis.start()
        await breakers.allow("acme")
        await breakers.allow("acme")
    lines = [r for r in caplog.records if r.name == "kiln.redis"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO], [
        r.getMessage() for r in lines
    ]
    assert "breakers" in lines[0].getMessage()
    assert fallbacks("provider breakers") - before == 40


async def test_a_generation_whose_provider_call_ends_while_redis_is_down_completes(
    make_user, backend, private_redis, worker_clients
):
    prefix = f"t:{uuid.uuid4().hex}"
    client = worker_clients.connect()
    deps = provider_deps(KillsRedisMidCall(private_redis))
    deps.breakers = RedisBreakers(client, POLICY, prefix=f"{prefix}:breaker")
    deps.limiter = RedisLimiter(
        client, {"local": ProviderLimit(max_concurrent=2)}, prefix=f"{prefix}:limit"
    )
    user = await make_user(credits=3)
    row = await run_in_process(user, deps, backend.store)
    assert row.status is GenerationStatus.COMPLETED, row.error_code
    assert (await generations.outputs_of(row.id))[0].storage_key
    await assert_ledger_matches(user.id)
