"""HTTP endpoints outside GraphQL answer an outage of Redis or the database with 503 and a
JSON body naming the code (UNAVAILABLE) and when to try again, never a bare 500, and record
nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from models.error_event import ErrorEvent
from services import credits, error_events
from tests.support.app import kiln_app
from tests.support.payments import SECRET, checkout_event, sign
from tests.support.private_servers import PrivateRedis


@pytest.fixture
async def dead_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a Redis that has just died."""
    with PrivateRedis() as server:
        client = aioredis.Redis.from_url(server.url())
        await client.ping()
        server.kill()
        yield client
        await client.aclose()


@pytest.fixture
def kiln(backend, monkeypatch, dead_redis) -> Callable[[], httpx.AsyncClient]:
    """create_app on the test's database, its runtime's Redis dead."""
    app = kiln_app(backend, monkeypatch, redis=dead_redis, payment_webhook_secret=SECRET)

    def client() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.77", 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://kiln.test")

    return client


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "UNAVAILABLE"
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_payment_webhook_while_redis_is_down_is_handled_once_and_records_nothing(
    kiln, make_user
):
    """Payments need only PostgreSQL (rate limits count in-process while Redis is down), so
    the payment is granted rather than answered 503, and a redelivery changes nothing."""
    user = await make_user(credits=0)
    body = checkout_event(user.id, "starter")
    await error_events.flush()
    before = await ErrorEvent.all().count()
    async with kiln() as client:
        responses = [
            await client.post(
                "/webhooks/payments", content=body, headers={"Stripe-Signature": sign(body)}
            )
            for _ in range(2)
        ]
    assert [r.status_code for r in responses] == [200, 200], responses[0].text
    assert [r.json()["action"] for r in responses] == ["granted", "duplicate"]
    assert (await credits.get_balance(user.id)).available == 100
    for _ in range(3):
        await asyncio.sleep(0.01)  # anything recorded in the background has started
    await error_events.flush()
    assert await ErrorEvent.all().count() == before


async def test_readyz_names_the_code_and_the_failing_part(kiln):
    async with kiln() as client:
        response = await client.get("/readyz")
    assert_unavailable(response)
    body = response.json()
    assert body["ready"] is False and body["checks"]["redis"].startswith("failing")
