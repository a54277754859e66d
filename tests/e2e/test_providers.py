"""Providers end to end, on both stacks: the worker processes call a fake OpenAI-compatible
provider over HTTP (tests/e2e/fake_provider.py) through the real adapter, routing,
breakers and limits."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

ADJUST = """mutation($u: ID!, $a: Int!) {
  adjustCredits(userId: $u, amount: $a, reason: "e2e provider load") { available }
}"""
HEALTH = "{ providerHealth { provider circuit calls successRate lastError } }"


async def circuit(stack: Running, provider: str) -> str:
    data = await stack.client.data(HEALTH, token=stack.admin_token)
    return next(h["circuit"] for h in data["providerHealth"] if h["provider"] == provider)


async def test_a_remote_provider_serves_and_its_output_is_stored(stack: Running):
    account = await api.register(stack.client)
    created = await api.create(stack.client, account, model="remote-image")
    last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert (last["status"], last["provider"]) == ("COMPLETED", "openai"), last
    [output] = last["outputs"]
    assert output["url"].startswith(stack.base_url)  # ours, never the provider's
    response = await stack.client.http.get(output["url"])
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


async def test_the_second_route_serves_when_the_first_provider_fails(stack: Running):
    account = await api.register(stack.client)
    before = stack.provider.calls["broken-model"]
    created = await api.create(stack.client, account, model="failover-image")
    last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert (last["status"], last["provider"]) == ("COMPLETED", "local"), last
    assert stack.provider.calls["broken-model"] > before
    assert await api.balance(stack.client, account) == {"available": 4, "reserved": 0, "total": 4}


async def test_a_failing_provider_opens_its_breaker_for_all_workers_then_recovers(
    stack: Running,
):
    account = await api.register(stack.client)
    await stack.client.data(ADJUST, {"u": account.user_id, "a": 30}, stack.admin_token)
    stack.provider.down = True
    try:
        for _ in range(4):  # 2 tries each: the breaker (3 failures in 3 calls) opens
            created = await api.create(stack.client, account, model="flaky-image")
            last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
            assert (last["status"], last["provider"]) == ("COMPLETED", "local")
        assert await circuit(stack, "openai") == "OPEN"
        calls = stack.provider.calls["flaky-model"]
        # While open, every worker skips the provider: served by the next route, no calls.
        skipping = [await api.create(stack.client, account, model="flaky-image") for _ in range(6)]
        for generation in skipping:
            last = (await api.watch(stack.ws_url, account, generation["id"]))[-1]
            assert (last["status"], last["provider"]) == ("COMPLETED", "local")
        assert stack.provider.calls["flaky-model"] == calls
    finally:
        stack.provider.down = False
    await asyncio.sleep(2.2)  # the cooldown: the breaker half-opens
    assert await circuit(stack, "openai") == "HALF_OPEN"
    created = await api.create(stack.client, account, model="flaky-image")
    last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert (last["status"], last["provider"]) == ("COMPLETED", "openai")  # the probe
    assert await circuit(stack, "openai") == "CLOSED"


async def test_a_provider_limited_to_five_calls_never_sees_six(stack: Running):
    stack.provider.reset()
    stack.provider.delay = 0.1
    accounts = [await api.register(stack.client) for _ in range(4)]
    for account in accounts:
        await stack.client.data(ADJUST, {"u": account.user_id, "a": 50}, stack.admin_token)
    try:
        created = await asyncio.gather(
            *[
                api.create(stack.client, accounts[i % 4], model="remote-image", width=64, height=64)
                for i in range(200)
            ]
        )
        owner = {g["id"]: accounts[i % 4] for i, g in enumerate(created)}
        pending = set(owner)
        async with asyncio.timeout(120):
            while pending:
                await asyncio.sleep(0.5)
                for account in accounts:
                    for node in await api.my_generations(stack.client, account):
                        if node["status"] in api.FINAL:
                            pending.discard(node["id"])
    finally:
        stack.provider.delay = 0.05
    assert stack.provider.max_in_flight <= 5
    assert stack.provider.calls["good-model"] == 200
    for account in accounts:
        nodes = await api.my_generations(stack.client, account)
        assert {n["status"] for n in nodes} == {"COMPLETED"}


async def test_a_queued_provider_is_polled_with_delayed_messages(stack: Running):
    account = await api.register(stack.client)
    created = await api.create(stack.client, account, model="queued-image")
    updates = await api.watch(stack.ws_url, account, created["id"], within=60)
    api.assert_monotonic(updates)
    last = updates[-1]
    assert (last["status"], last["provider"]) == ("COMPLETED", "replicate"), last
    assert any(
        u["status"] == "PROCESSING" and u["stage"] not in (None, "starting") for u in updates
    )  # the provider's own states came through
    response = await stack.client.http.get(last["outputs"][0]["url"])
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


async def test_cancelling_stops_the_provider_job(stack: Running):
    account = await api.register(stack.client)
    stack.replicate.outcome.polls = 50  # it would run for a long while
    try:
        created = await api.create(stack.client, account, model="queued-image")
        async with await api.GraphQLSocket.open(stack.ws_url, account.token) as socket:
            subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
            await subscription.collect_until(
                lambda m: m["generationUpdated"]["status"] == "PROCESSING"
            )
        await asyncio.sleep(0.5)  # let the job be submitted
        await stack.client.data(api.CANCEL, {"id": created["id"]}, account.token)
        async with asyncio.timeout(20):
            while not any(c.path.endswith("/cancel") for c in stack.replicate.calls("POST")):
                await asyncio.sleep(0.2)
    finally:
        stack.replicate.outcome.polls = 2
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}
