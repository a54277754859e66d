"""Subscriptions over HTTP through the ASGI app (web/http_streams.py): Apollo's multipart
subscriptions as Apollo Client and urql ask for them, GraphQL over SSE as graphql-sse and urql
ask for it, and a clear BAD_USER_INPUT (never INTERNAL, never recorded as a server error) for
a subscription sent where no stream was asked for."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import orjson
import pytest

from models.error_event import ErrorEvent
from realtime.hub import get_hub
from services import auth
from services.runner import run_generation
from tests.support.app import app_client, kiln_app
from tests.support.generations import CATALOGUE, create, registry
from tests.support.streaming import multipart_parts, payloads, sse_events, stream

WATCH = "subscription Watch($id: ID!) { generationUpdated(id: $id) { id status progress version } }"
BALANCE = "subscription { creditBalanceChanged { available } }"
# What each client sends for a subscription.
APOLLO_ACCEPT = "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json"
APOLLO_3_ACCEPT = 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json'
BRIEF_ACCEPT = 'multipart/mixed;subscriptionSpec="1.0", application/json'
URQL_SUBSCRIPTION_ACCEPT = "text/event-stream, multipart/mixed"
URQL_QUERY_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)


async def test_a_multipart_subscription_streams_a_generation_until_it_completes(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    generation = await create(user, model="local-image")
    app = kiln_app(backend, monkeypatch)
    body = {"query": WATCH, "variables": {"id": str(generation.id)}, "operationName": "Watch"}
    headers = {"authorization": f"Bearer {token}", "accept": APOLLO_ACCEPT}
    async with stream(app, "POST", "/graphql", json=body, headers=headers) as response:
        assert response.status == 200
        events = payloads(multipart_parts(response.headers, response.chunks()))
        updates = [(await anext(events))["data"]["generationUpdated"]]
        assert updates[0]["status"] == "QUEUED"
        # The subscription is live (its first message is the state it read): run it.
        await run_generation(generation.id, CATALOGUE, registry(), backend.store)
        async for payload in events:
            assert "errors" not in payload, payload
            updates.append(payload["data"]["generationUpdated"])
        # Nothing after the closing boundary, and the response ends.
        assert await response.body() == b""
    assert updates[-1]["status"] == "COMPLETED"
    versions = [u["version"] for u in updates]
    assert versions == sorted(set(versions))
    assert get_hub().local_subscriptions == 0


@pytest.mark.parametrize("accept", [APOLLO_3_ACCEPT, BRIEF_ACCEPT])
async def test_every_spelling_of_the_multipart_accept_streams(
    backend, make_user, monkeypatch, accept
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    app = kiln_app(backend, monkeypatch)
    headers = {"authorization": f"Bearer {token}", "accept": accept}
    async with stream(
        app, "POST", "/graphql", json={"query": BALANCE}, headers=headers
    ) as response:
        assert response.status == 200
        first = await anext(payloads(multipart_parts(response.headers, response.chunks())))
    assert first == {"data": {"creditBalanceChanged": {"available": 5}}}
    assert get_hub().local_subscriptions == 0  # the client left: the subscription ended


async def test_graphql_over_sse_streams_with_lf_line_ends(backend, make_user, monkeypatch):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    generation = await create(user, model="local-image")
    app = kiln_app(backend, monkeypatch)
    body = {"query": WATCH, "variables": {"id": str(generation.id)}}
    headers = {"authorization": f"Bearer {token}", "accept": URQL_SUBSCRIPTION_ACCEPT}
    async with stream(app, "POST", "/graphql", json=body, headers=headers) as response:
        assert response.status == 200
        events = sse_events(response.headers, response.chunks())
        event, data = await anext(events)
        updates = [orjson.loads(data)["data"]["generationUpdated"]]
        assert (event, updates[0]["status"]) == ("next", "QUEUED")
        await run_generation(generation.id, CATALOGUE, registry(), backend.store)
        kinds = []
        async for event, data in events:
            kinds.append(event)
            if event == "next":
                updates.append(orjson.loads(data)["data"]["generationUpdated"])
    assert kinds[-1] == "complete" and kinds.count("complete") == 1
    assert updates[-1]["status"] == "COMPLETED"


async def test_a_subscription_streams_over_get_too_and_is_never_cached(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    app = kiln_app(backend, monkeypatch)
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
    query = urlencode({"query": BALANCE})
    async with stream(app, "GET", "/graphql", headers=headers, query_string=query) as response:
        assert response.status == 200
        cache_control = response.headers["cache-control"]
        event, data = await anext(sse_events(response.headers, response.chunks()))
    assert (event, orjson.loads(data)) == (
        "next",
        {"data": {"creditBalanceChanged": {"available": 5}}},
    )
    assert "no-store" in cache_control and "no-transform" in cache_control


async def test_an_anonymous_subscription_over_http_ends_with_its_error(backend, monkeypatch):
    app = kiln_app(backend, monkeypatch)
    headers = {"accept": APOLLO_ACCEPT}
    async with stream(
        app, "POST", "/graphql", json={"query": BALANCE}, headers=headers
    ) as response:
        (payload,) = [
            p async for p in payloads(multipart_parts(response.headers, response.chunks()))
        ]
    assert payload["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_subscription_without_a_stream_is_bad_user_input_not_a_server_error(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    headers = {"authorization": f"Bearer {token}"}
    events_before = await ErrorEvent.all().count()
    async with app_client(backend, monkeypatch) as client:
        answers = [
            await client.post("/graphql", json={"query": BALANCE}, headers=headers),
            await client.post(
                "/graphql",
                json={"query": BALANCE},
                headers={**headers, "accept": "application/json"},
            ),
            await client.get("/graphql", params={"query": BALANCE}, headers=headers),
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        (error,) = answer.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "multipart/mixed" in error["message"] and "text/event-stream" in error["message"]
    await asyncio.sleep(0)  # a recording would have been started by now
    assert await ErrorEvent.all().count() == events_before


async def test_a_query_with_urqls_accept_gets_plain_json(backend, make_user, monkeypatch):
    """urql lists the stream types after the JSON ones for every query."""
    async with app_client(backend, monkeypatch) as client:
        answer = await client.post(
            "/graphql", json={"query": "{ models { id } }"}, headers={"accept": URQL_QUERY_ACCEPT}
        )
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["data"]["models"]
