"""Redis and PostgreSQL go down under a production stack (uvicorn and `dramatiq tasks`
processes) that runs on private servers of its own (tests/support/private_servers.py), so
killing them disturbs no other test.

- Redis killed while generations run (it keeps nothing on disk): the provider calls that end
  meanwhile are not thrown away; every generation completes and the books balance.
- While Redis is down, requests that need only PostgreSQL are served (rate limits count in
  each process): generations are accepted, and complete once Redis is back (the sweeper sends
  the jobs lost with it).
- While PostgreSQL is down, createGeneration answers UNAVAILABLE with retryAfter, and nothing
  is recorded as an error event; once the server is back, requests work again.

Recovery bounds are generous upper bounds, never speed measurements."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e import api
from tests.e2e.client import KilnClient
from tests.e2e.conftest import ServedReplicate
from tests.e2e.fake_provider import FakeProvider
from tests.e2e.stack import (
    E2E_METRICS_TOKEN,
    Stack,
    StackError,
    create_admin,
    provider_env,
)
from tests.support.app import parse, value
from tests.support.private_servers import PrivatePostgres, PrivateRedis
from tests.support.private_stack import start_on_private_servers

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "an admin password"
AUDIT = "query { creditAudit { ok accounts mismatches { userId balance ledgerSum } } }"
EVENTS = """query { errorEvents(first: 50, filter: {window: LAST_24_HOURS}) {
  edges { node { errorCode message count } } } }"""
# Generations that take a few seconds (two outputs of three 0.5 s steps each), so Redis can
# be killed while their provider calls run.
SLOW = {"prompt": "a lighthouse", "model": "local-steady", "numOutputs": 2}
RECOVERY = 60.0  # an upper bound on coming back, never a measurement


@dataclass
class Outages:
    stack: Stack
    client: KilnClient
    admin_token: str
    redis: PrivateRedis
    postgres: PrivatePostgres


@pytest.fixture(scope="module")
async def outages(
    tmp_path_factory: pytest.TempPathFactory,
    private_redis: PrivateRedis,
    private_postgres: PrivatePostgres,
    provider: FakeProvider,
    replicate: ServedReplicate,
) -> AsyncIterator[Outages]:
    env = provider_env(provider.url, replicate.url)
    # The built-in provider under a limit too, so its leases are taken and given back across
    # the outage.
    env["PROVIDER_LIMITS"] = json.dumps(
        {"openai": {"max_concurrent": 5}, "local": {"max_concurrent": 8}}
    )
    data_dir = tmp_path_factory.mktemp("kiln-outages")
    try:
        stack = await start_on_private_servers(
            data_dir, private_redis, private_postgres, "kiln_outages", env
        )
        email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
        await asyncio.to_thread(create_admin, stack, email, ADMIN_PASSWORD)
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    client = KilnClient(stack.base_url)
    login = await client.data(api.LOGIN, {"email": email, "password": ADMIN_PASSWORD})
    try:
        yield Outages(stack, client, login["login"]["token"], private_redis, private_postgres)
    finally:
        await client.aclose()
        await asyncio.to_thread(stack.stop)


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, within: float = RECOVERY
) -> Any:
    """`check()`'s first truthy result; exceptions count as not yet."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
            last = result
        except Exception as error:  # the server may refuse while it comes back
            last = error
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within:.0f} s (last: {last!r})")


async def statuses(outages: Outages, account: api.Account, ids: list[str]) -> list[str]:
    return [(await api.generation(outages.client, account, i))["status"] for i in ids]


async def internal_occurrences(outages: Outages) -> int:
    data = await outages.client.data(EVENTS, token=outages.admin_token)
    return sum(
        edge["node"]["count"]
        for edge in data["errorEvents"]["edges"]
        if edge["node"]["errorCode"] in ("INTERNAL", "INTERNAL_ERROR")
    )


async def metric(outages: Outages, name: str, **labels: str) -> float:
    response = await outages.client.http.get(
        "/metrics", headers={"Authorization": f"Bearer {E2E_METRICS_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    return value(parse(response.text), name, **labels)


async def assert_books_balance(outages: Outages) -> None:
    audit = await outages.client.data(AUDIT, token=outages.admin_token)
    assert audit["creditAudit"]["ok"], audit["creditAudit"]


async def assert_unavailable(outages: Outages, account: api.Account) -> None:
    error = await outages.client.error(api.CREATE, {"input": SLOW}, account.token)
    assert error["extensions"]["code"] == "UNAVAILABLE", error
    assert error["extensions"]["retryAfter"] >= 1
    assert "requestId" not in error["extensions"]


async def assert_a_generation_completes(outages: Outages) -> None:
    """A new account's generation is accepted and completes (the stack is whole again)."""
    account = await eventually(lambda: api.register(outages.client), "registering again")
    created = await eventually(
        lambda: api.create(outages.client, account, prompt="after the outage"), "creating again"
    )

    async def completed() -> bool:
        found = await statuses(outages, account, [created["id"]])
        assert found != ["FAILED"], found
        return found == ["COMPLETED"]

    await eventually(completed, "a generation after the outage completing")


async def test_generations_whose_provider_calls_end_while_redis_is_down_complete(
    outages: Outages,
):
    accounts = [await api.register(outages.client) for _ in range(3)]
    ids = {
        account.email: [(await api.create(outages.client, account, **SLOW))["id"] for _ in range(2)]
        for account in accounts
    }

    found: list[str] = []

    async def all_in(*wanted: str) -> bool:
        found[:] = [
            status
            for account in accounts
            for status in await statuses(outages, account, ids[account.email])
        ]
        assert "FAILED" not in found, found
        return all(status in wanted for status in found)

    # Every one is running (its provider call has begun) ...
    await eventually(lambda: all_in("PROCESSING", "COMPLETED"), "generations starting")
    outages.redis.kill()  # ... when Redis dies: their provider calls end during the outage
    try:
        assert "PROCESSING" in found, found  # (so some of them really did)
        await eventually(lambda: all_in("COMPLETED"), "generations completing while Redis is down")
        for account in accounts:
            balance = await api.balance(outages.client, account)
            assert balance == {"available": 1, "reserved": 0, "total": 1}, balance
    finally:
        outages.redis.start()
    await assert_books_balance(outages)
    await assert_a_generation_completes(outages)


async def test_generations_accepted_while_redis_is_down_complete_once_it_is_back(
    outages: Outages,
):
    """createGeneration needs only PostgreSQL: while Redis is down it is accepted (the rate
    limit counted in the process, the job lost), and once Redis is back the sweeper sends the
    lost jobs and every one completes."""
    account = await api.register(outages.client)  # 5 credits, one per generation
    before = await internal_occurrences(outages)
    outages.redis.kill()
    try:
        created = [
            await api.create(outages.client, account, prompt=f"while Redis is down {i}")
            for i in range(3)
        ]
        assert await statuses(outages, account, [c["id"] for c in created]) == ["QUEUED"] * 3
    finally:
        outages.redis.start()

    async def all_completed() -> bool:
        found = await statuses(outages, account, [c["id"] for c in created])
        assert "FAILED" not in found, found
        return found == ["COMPLETED"] * 3

    await eventually(all_completed, "generations accepted while Redis was down completing")
    assert await internal_occurrences(outages) == before
    await assert_books_balance(outages)


async def test_create_generation_while_postgres_is_down_is_unavailable(outages: Outages):
    account = await api.register(outages.client)
    before = await internal_occurrences(outages)
    counted = await metric(outages, "kiln_dependency_unavailable_total", dependency="database")
    await asyncio.to_thread(outages.postgres.stop)
    try:
        for _ in range(3):
            await assert_unavailable(outages, account)
        ready = await outages.client.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["code"] == "UNAVAILABLE", ready.text
        assert ready.json()["checks"]["database"].startswith("failing")
        assert (
            await metric(outages, "kiln_dependency_unavailable_total", dependency="database")
            >= counted + 3
        )
    finally:
        await asyncio.to_thread(outages.postgres.start)
    await assert_a_generation_completes(outages)
    assert await internal_occurrences(outages) == before
    await assert_books_balance(outages)
