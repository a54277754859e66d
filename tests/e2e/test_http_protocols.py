"""The HTTP protocols frontend clients speak, against real uvicorn: Apollo Client's and urql's
persisted queries (in production shared by two API processes through Redis), a multipart
subscription as Apollo Client asks for it and GraphQL over SSE as urql asks for it, each
streaming a generation until it completes, and how GET answers may be cached. Raw HTTP, sent
as those clients send it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.e2e.api import GENERATION_UPDATED, assert_monotonic, create, register
from tests.e2e.conftest import Running
from tests.e2e.stack import ROOT, free_port
from tests.support.streaming import multipart_parts, payloads, sse_events

TIMEOUT = 30.0
MODELS = "query Models { models { id kind costPerOutput } }"
NOT_FOUND = {
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
}
APOLLO_QUERY_ACCEPT = "application/graphql-response+json,application/json;q=0.9"
APOLLO_SUBSCRIPTION_ACCEPT = (
    "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,"
    "application/graphql-response+json,application/json;q=0.9"
)
URQL_SUBSCRIPTION_ACCEPT = "text/event-stream, multipart/mixed"


def persisted(text: str) -> dict[str, Any]:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def hashed_get(text: str) -> dict[str, str]:
    return {
        "operationName": "Models",
        "variables": "{}",
        "extensions": orjson.dumps(persisted(text)).decode(),
    }


@contextlib.asynccontextmanager
async def second_api(stack: Running) -> AsyncIterator[str]:
    """Another uvicorn of the production stack, with the same settings on its own port (as a
    second machine behind the load balancer); stopped on leaving."""
    api = stack.stack.process("api")
    port = free_port()
    args = [*api.args[:-1], str(port)]
    assert api.args[-2] == "--port"
    log_path = stack.stack.data_dir / "api-2.log"
    with log_path.open("ab") as log_file:
        popen = await asyncio.create_subprocess_exec(
            *args,
            cwd=ROOT,
            env=api.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    assert popen.returncode is None, log_path.read_text()[-3000:]
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await popen.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            await popen.wait()


async def test_persisted_queries_as_apollo_sends_them(stack: Running):
    """The hash alone, told it is unknown; the text with the hash; then the hash alone by GET,
    which any API process answers (production: through Redis), publicly cacheable."""
    text = f"{MODELS} # e2e {stack.kind} {os.getpid()}"
    http = stack.client.http
    headers = {"accept": APOLLO_QUERY_ACCEPT}
    hashed = {"operationName": "Models", "variables": {}, "extensions": persisted(text)}
    unknown = await http.post("/graphql", json=hashed, headers=headers)
    assert (unknown.status_code, unknown.json()) == (200, NOT_FOUND)
    registered = await http.post("/graphql", json={**hashed, "query": text}, headers=headers)
    models = registered.json()["data"]["models"]
    assert models
    again = await http.get("/graphql", params=hashed_get(text), headers=headers)
    assert again.json() == {"data": {"models": models}}
    assert again.headers["cache-control"].startswith("public, max-age=")
    if stack.kind != "production":
        return
    async with second_api(stack) as other, httpx.AsyncClient(base_url=other) as client:
        elsewhere = await client.get("/graphql", params=hashed_get(text), headers=headers)
        assert elsewhere.json() == {"data": {"models": models}}
        unknown_elsewhere = await client.get(
            "/graphql", params=hashed_get(text + " "), headers=headers
        )
        assert unknown_elsewhere.json() == NOT_FOUND


async def watch_over_http(
    stack: Running, token: str, generation_id: str, accept: str
) -> tuple[httpx.Headers, list[dict[str, Any]]]:
    """POSTs the subscription with `accept` and reads the whole stream (it must end)."""
    body = {
        "query": GENERATION_UPDATED,
        "variables": {"id": generation_id},
        "operationName": "Watch",
    }
    headers = {"authorization": f"Bearer {token}", "accept": accept}
    updates: list[dict[str, Any]] = []
    async with asyncio.timeout(TIMEOUT):
        async with stack.client.http.stream(
            "POST", "/graphql", json=body, headers=headers
        ) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            if response.headers["content-type"].startswith("multipart/mixed"):
                async for payload in payloads(multipart_parts(response.headers, chunks)):
                    assert "errors" not in payload, payload
                    updates.append(payload["data"]["generationUpdated"])
            else:
                events = [e async for e in sse_events(response.headers, chunks)]
                assert events[-1][0] == "complete"
                for event, data in events[:-1]:
                    assert event == "next"
                    updates.append(orjson.loads(data)["data"]["generationUpdated"])
            return response.headers, updates


async def test_a_multipart_subscription_streams_a_generation_until_it_completes(stack: Running):
    account = await register(stack.client)
    generation = await create(stack.client, account, model="local-steady")
    headers, updates = await watch_over_http(
        stack, account.token, generation["id"], APOLLO_SUBSCRIPTION_ACCEPT
    )
    assert headers["content-type"].startswith("multipart/mixed;boundary=graphql")
    assert updates[-1]["status"] == "COMPLETED" and updates[-1]["outputs"]
    assert len(updates) >= 2
    assert_monotonic(updates)


async def test_an_sse_subscription_streams_a_generation_until_it_completes(stack: Running):
    account = await register(stack.client)
    generation = await create(stack.client, account, model="local-steady")
    headers, updates = await watch_over_http(
        stack, account.token, generation["id"], URQL_SUBSCRIPTION_ACCEPT
    )
    assert headers["content-type"].startswith("text/event-stream")
    assert updates[-1]["status"] == "COMPLETED"
    assert_monotonic(updates)


async def test_a_subscription_without_a_stream_is_refused_clearly(stack: Running):
    account = await register(stack.client)
    error = await stack.client.error(
        "subscription { creditBalanceChanged { available } }", token=account.token
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "text/event-stream" in error["message"]
