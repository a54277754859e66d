"""Credits end to end: races through the real HTTP server, payment webhooks over HTTP, and a
worker killed mid-generation. The books are audited after every test (conftest)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running
from tests.e2e.stack import PAYMENT_WEBHOOK_SECRET
from tests.support.payments import checkout_event, sign

pytestmark = pytest.mark.e2e

ADJUST = """mutation($u: ID!, $a: Int!, $r: String!) {
  adjustCredits(userId: $u, amount: $a, reason: $r) { available }
}"""


async def funded_account(stack: Running, credits: int) -> api.Account:
    account = await api.register(stack.client)
    await stack.client.data(
        ADJUST, {"u": account.user_id, "a": credits - 5, "r": "race"}, stack.admin_token
    )
    return account


async def test_fifty_concurrent_creates_on_ten_credits_accept_exactly_ten(stack: Running):
    account = await funded_account(stack, 10)
    lowest = {"available": 10}
    done = asyncio.Event()

    async def watch_balance() -> None:
        while not done.is_set():
            lowest["available"] = min(
                lowest["available"], (await api.balance(stack.client, account))["available"]
            )

    watcher = asyncio.create_task(watch_balance())
    responses = await asyncio.gather(
        *[
            stack.client.gql(api.CREATE, {"input": api.image_input()}, account.token)
            for _ in range(50)
        ]
    )
    done.set()
    await watcher
    accepted = [r for r in responses if not r.get("errors")]
    codes = [r["errors"][0]["extensions"]["code"] for r in responses if r.get("errors")]
    assert len(accepted) == 10
    assert codes == ["INSUFFICIENT_CREDITS"] * 40
    assert lowest["available"] >= 0
    balance = await api.balance(stack.client, account)
    assert balance["available"] == 0 and balance["total"] <= 10
    assert len(await api.my_generations(stack.client, account)) == 10


async def test_cancels_racing_completions_settle_each_generation_once(stack: Running):
    account = await funded_account(stack, 12)
    created = [await api.create(stack.client, account) for _ in range(12)]
    # Cancel each at a different moment of its run: some while queued, some mid-way.
    for index, generation in enumerate(created):
        await asyncio.sleep(0.02 * (index % 4))
        await stack.client.gql(api.CANCEL, {"id": generation["id"]}, account.token)
    finals = [(await api.watch(stack.ws_url, account, g["id"]))[-1] for g in created]
    ledger = await api.transactions(stack.client, account)
    for final in finals:
        settled = [
            e["kind"]
            for e in ledger
            if e["generationId"] == final["id"] and e["kind"] in ("CAPTURE", "RELEASE")
        ]
        assert settled == (["CAPTURE"] if final["status"] == "COMPLETED" else ["RELEASE"])
    completed = sum(f["status"] == "COMPLETED" for f in finals)
    assert await api.balance(stack.client, account) == {
        "available": 12 - completed,
        "reserved": 0,
        "total": 12 - completed,
    }


async def post_webhook(stack: Running, body: bytes, signature: str | None):
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    return await stack.client.http.post("/webhooks/payments", content=body, headers=headers)


async def test_payment_webhooks_grant_once_and_refuse_forgeries(stack: Running):
    account = await api.register(stack.client)
    body = checkout_event(account.user_id, "pro")
    async with await api.GraphQLSocket.open(stack.ws_url, account.token) as socket:
        updates = await socket.subscribe(api.BALANCE_CHANGED)
        for _ in range(4):  # the delivery, then Stripe's replays
            response = await post_webhook(stack, body, sign(body, PAYMENT_WEBHOOK_SECRET))
            assert response.status_code == 200, response.text
        seen = await updates.collect_until(lambda m: m["creditBalanceChanged"]["available"] == 505)
        assert seen[0]["creditBalanceChanged"]["available"] in (5, 505)

    stale = sign(body, PAYMENT_WEBHOOK_SECRET, at=int(time.time()) - 400)
    tampered = body.replace(b'"pro"', b'"premium"')
    for payload, signature in [
        (tampered, sign(body, PAYMENT_WEBHOOK_SECRET)),
        (body, sign(body, "whsec_nope")),
        (body, stale),
        (body, None),
        (b"{oops", sign(b"{oops", PAYMENT_WEBHOOK_SECRET)),
    ]:
        response = await post_webhook(stack, payload, signature)
        assert response.status_code == 400 and response.json()["error"]
    assert await api.balance(stack.client, account) == {
        "available": 505,
        "reserved": 0,
        "total": 505,
    }
    purchases = [
        e for e in await api.transactions(stack.client, account) if e["kind"] == "PURCHASE"
    ]
    assert len(purchases) == 1 and purchases[0]["amount"] == 500
    assert purchases[0]["reference"].startswith("pi_")
