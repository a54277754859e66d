"""Abuse resistance through the real server: body and document limits, rate-limit headers,
the per-socket subscription cap, login lockout shared by the API processes, API keys over
HTTP and WebSocket, CORS, and no mutations over GET or in batches."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from tests.e2e import api
from tests.e2e.client import GraphQLSocket, close_code_of
from tests.e2e.conftest import Running
from tests.e2e.stack import E2E_CORS_ORIGIN, E2E_RATE_LIMIT

pytestmark = pytest.mark.e2e

SUBSCRIPTIONS_PER_SOCKET = 20  # MAX_SUBSCRIPTIONS_PER_CONNECTION's default


async def test_a_two_megabyte_body_is_refused_with_413(stack: Running) -> None:
    padding = "#" + "x" * (2 * 1024 * 1024) + "\n"
    response = await stack.client.http.post(
        "/graphql", json={"query": padding + "{ models { id } }"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Chunked, without a Content-Length: counted as it arrives.

    async def chunks():
        for _ in range(40):
            yield b" " * 65536

    chunked = await stack.client.http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413


async def test_too_deep_and_too_many_aliases_over_http(stack: Running) -> None:
    account = await api.register(stack.client)
    deep = "{ generations { edges { node { " + "parent { " * 12 + "id" + " }" * 12 + " } } } }"
    error = await stack.client.error(deep, token=account.token)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    aliases = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(100)) + " }"
    error = await stack.client.error(aliases, token=account.token)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_mutations_carry_rate_limit_headers(stack: Running) -> None:
    account = await api.register(stack.client)
    remaining = []
    for _ in range(3):
        response = await stack.client.http.post(
            "/graphql",
            json={"query": api.CREATE_API_KEY, "variables": {"name": "ci"}},
            headers={"Authorization": f"Bearer {account.token}"},
        )
        assert response.status_code == 200 and "errors" not in response.json()
        assert response.headers["RateLimit-Limit"] == str(E2E_RATE_LIMIT)
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]


async def test_the_fourth_failed_login_is_rate_limited(stack: Running) -> None:
    account = await api.register(stack.client)
    wrong = {"email": account.email, "password": "not the password"}
    for _ in range(3):
        error = await stack.client.error(api.LOGIN, wrong)
        assert error["extensions"]["code"] == "UNAUTHENTICATED"
    right = {"email": account.email, "password": api.PASSWORD}
    error = await stack.client.error(api.LOGIN, right)
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 800 < error["extensions"]["retryAfter"] <= 900


async def test_two_hundred_subscriptions_on_one_socket(stack: Running) -> None:
    account = await api.register(stack.client)
    async with await GraphQLSocket.open(stack.ws_url, account.token) as socket:
        subscriptions = [
            await socket.subscribe("subscription { creditBalanceChanged { available } }")
            for _ in range(200)
        ]
        outcomes: Counter[str] = Counter()
        for subscription in subscriptions:
            kind, payload = await subscription.receive()
            if kind == "error":
                outcomes[payload[0]["extensions"]["code"]] += 1
            else:
                outcomes[kind] += 1
        assert outcomes == {"next": SUBSCRIPTIONS_PER_SOCKET, "RATE_LIMITED": 180}
        # The socket still works: finishing one frees a slot.
        await subscriptions[0].stop()
        await asyncio.sleep(0.2)
        again = await socket.subscribe("subscription { creditBalanceChanged { available } }")
        first = await again.next()
        assert first is not None and first["creditBalanceChanged"]["available"] == 5


async def test_api_keys_work_over_http_and_sockets_until_revoked(stack: Running) -> None:
    account = await api.register(stack.client)
    created = await api.create_api_key(stack.client, account, "deploy bot")
    secret, key = created["secret"], created["apiKey"]
    assert secret.startswith("kiln_") and secret.startswith(key["prefix"])

    me = await stack.client.data(api.ME, token=secret)
    assert me["me"]["id"] == account.user_id
    listed = (await stack.client.data(api.API_KEYS, token=account.token))["apiKeys"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert listed[0]["lastUsedAt"] is not None
    assert "secret" not in listed[0]

    async with await GraphQLSocket.open(stack.ws_url, secret) as socket:
        watch = await socket.subscribe("subscription { creditBalanceChanged { available } }")
        first = await watch.next()
        assert first is not None and first["creditBalanceChanged"]["available"] == 5

    other = await api.register(stack.client)
    error = await stack.client.error(api.REVOKE_API_KEY, {"id": key["id"]}, other.token)
    assert error["extensions"]["code"] == "NOT_FOUND"
    await stack.client.data(api.REVOKE_API_KEY, {"id": key["id"]}, account.token)
    error = await stack.client.error(api.ME, token=secret)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert await close_code_of(stack.ws_url, {"authorization": f"Bearer {secret}"}) == 4403


async def test_mutations_are_never_accepted_over_get(stack: Running) -> None:
    account = await api.register(stack.client)
    response = await stack.client.http.get(
        "/graphql",
        params={"query": 'mutation { createApiKey(name: "via get") { secret } }'},
        headers={"Authorization": f"Bearer {account.token}", "Accept": "application/json"},
    )
    assert response.status_code in (400, 405), response.text
    keys = (await stack.client.data(api.API_KEYS, token=account.token))["apiKeys"]
    assert keys == []
    query = await stack.client.http.get(
        "/graphql",
        params={"query": "{ models { id } }"},
        headers={"Accept": "application/json"},
    )
    assert query.status_code == 200 and query.json()["data"]["models"]


async def test_batched_operations_are_refused(stack: Running) -> None:
    response = await stack.client.http.post(
        "/graphql", json=[{"query": "{ models { id } }"}, {"query": "{ presets { id } }"}]
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_cors_allows_only_the_configured_origin(stack: Running) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    allowed = await stack.client.http.options(
        "/graphql", headers={"Origin": E2E_CORS_ORIGIN, **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == E2E_CORS_ORIGIN
    refused = await stack.client.http.options(
        "/graphql", headers={"Origin": f"https://evil-{uuid.uuid4().hex[:6]}.example", **preflight}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    simple = await stack.client.http.post(
        "/graphql", json={"query": "{ models { id } }"}, headers={"Origin": E2E_CORS_ORIGIN}
    )
    assert simple.headers["access-control-allow-origin"] == E2E_CORS_ORIGIN
    assert "RateLimit-Remaining" in simple.headers.get("access-control-expose-headers", "") or (
        "ratelimit-remaining" in simple.headers.get("access-control-expose-headers", "").lower()
    )
