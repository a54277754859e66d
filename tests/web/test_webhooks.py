"""Webhooks anyone can POST to leave a bounded trace: an unknown provider is a plain 404 that
records nothing, a rejected webhook is one error group per provider and reason (never the
caller's text), and a client that keeps sending rejected webhooks is throttled."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from models.error_event import ErrorEvent
from providers.http import ProviderHTTP
from providers.replicate import ReplicateProvider
from services import error_events
from tests.support.app import kiln_app
from tests.support.fakes.replicate import SIGNING_SECRET
from tests.support.providers import provider_deps

PAYMENT_SECRET = "whsec_payments_test"
LIMIT = 3


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def kiln(backend, monkeypatch, http_client):
    """create_app on the test's database, with Replicate configured (webhook secret set);
    `kiln(peer)` is a client calling from that address. Each test has its own counters."""
    replicate = ReplicateProvider(
        ProviderHTTP("replicate", http_client),
        "r8_test",
        base_url="http://127.0.0.1:9/v1",
        webhook_secret=SIGNING_SECRET,
    )
    app = kiln_app(
        backend,
        monkeypatch,
        providers=provider_deps(replicate),
        payment_webhook_secret=PAYMENT_SECRET,
        webhook_rejections_per_ip=LIMIT,
    )

    def client(peer: str = "198.51.100.10") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://kiln.test")

    return client


async def groups(text: str) -> dict[str, int]:
    """Error groups whose message mentions `text`: message -> count."""
    await error_events.flush()
    rows = await ErrorEvent.filter(message__contains=text)
    return {row.message: row.count for row in rows}


async def everything_recorded() -> list[str]:
    await error_events.flush()
    return [
        orjson.dumps([row.message, row.last_occurrence]).decode() for row in await ErrorEvent.all()
    ]


async def test_an_unknown_provider_is_a_plain_404_that_records_nothing(kiln):
    before = await ErrorEvent.all().count()
    async with kiln() as client:
        for _ in range(5):
            marker = f"spam-{uuid.uuid4().hex}"
            response = await client.post(f"/webhooks/providers/{marker}", content=marker)
            assert response.status_code == 404
            assert marker not in response.text
    assert await ErrorEvent.all().count() == before


async def test_rejected_webhooks_are_one_group_per_provider_and_reason(kiln):
    markers = [f"caller-text-{uuid.uuid4().hex}" for _ in range(LIMIT)]
    async with kiln("198.51.100.20") as client:
        for marker in markers:
            response = await client.post(
                "/webhooks/providers/replicate",
                content=marker.encode(),
                headers={"webhook-id": marker, "webhook-signature": f"v1,{marker}"},
            )
            assert response.status_code == 400
    counted = await groups("replicate webhook rejected")
    assert len(counted) == 1 and sum(counted.values()) >= LIMIT
    assert not any(marker in row for row in await everything_recorded() for marker in markers)


async def test_a_client_sending_rejected_webhooks_is_throttled_unread(kiln):
    async with kiln("198.51.100.30") as throttled, kiln("198.51.100.31") as other:
        before = sum((await groups("replicate webhook rejected")).values())
        for _ in range(LIMIT):
            response = await throttled.post("/webhooks/providers/replicate", content=b"{}")
            assert response.status_code == 400
        refused = await throttled.post("/webhooks/providers/replicate", content=b"{}")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert sum((await groups("replicate webhook rejected")).values()) == before + LIMIT
        # Payments share the client's count; another client is not affected.
        assert (await throttled.post("/webhooks/payments", content=b"{}")).status_code == 429
        assert (await other.post("/webhooks/payments", content=b"{}")).status_code == 400


async def test_rejected_payment_webhooks_are_throttled_too(kiln):
    async with kiln("198.51.100.40") as client:
        before = sum((await groups("Payment webhook rejected")).values())
        statuses = [
            (await client.post("/webhooks/payments", content=b"{}")).status_code
            for _ in range(LIMIT + 2)
        ]
        assert statuses == [400] * LIMIT + [429, 429]
        assert sum((await groups("Payment webhook rejected")).values()) == before + LIMIT


def standard_webhooks_headers(body: bytes) -> dict[str, str]:
    """Signed as Replicate signs (Standard Webhooks) with the fake's secret."""
    msg_id, timestamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    key = base64.b64decode(SIGNING_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


async def test_a_valid_webhook_is_still_read(kiln):
    """For a job Kiln does not wait on (already finished, or not ours): 200, nothing done."""
    body = orjson.dumps({"id": f"p-{uuid.uuid4().hex}", "status": "succeeded", "output": []})
    async with kiln("198.51.100.50") as client:
        response = await client.post(
            "/webhooks/providers/replicate", content=body, headers=standard_webhooks_headers(body)
        )
    assert response.status_code == 200
    assert response.json() == {"received": True, "handled": False}
