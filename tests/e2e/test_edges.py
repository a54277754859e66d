"""Kiln's edges through the real servers: `python server.py` (embedded) and uvicorn run with
exactly the README's production flags. A rotating X-Forwarded-For from an untrusted peer gets
no fresh sign-up or login limits while a trusted proxy's header names the client; request
heads have a deadline, a size and a count; WebSocket messages are capped like bodies.

These stacks are their own (low per-address limits, a trusted proxy at 127.0.0.2, a short
head deadline): the shared ones allow every test an address's worth of operations."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e import api
from tests.e2e.client import SUBPROTOCOL
from tests.e2e.stack import Stack, StackError, start_embedded, start_production
from tests.support.migrations import scratch_postgres
from tests.support.raw_http import read_until_closed
from tests.support.services import need, redis_url

pytestmark = pytest.mark.e2e

PER_ADDRESS = 3  # RATE_LIMIT_PER_IP: sign-ups and logins per client address and minute
TRUSTED_PROXY = "127.0.0.2"  # loopback too: the tests call from it to play the proxy
HEAD_DEADLINE = 1.0
PATIENCE = 15.0  # generous: how long a refusal may take on a busy machine
EDGES_DATABASE = "kiln_e2e_edges"
EDGES_REDIS_DB = 15


@pytest.fixture(scope="module", params=["embedded", "production"])
async def edges(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    kind: str = request.param
    data_dir = tmp_path_factory.mktemp(f"kiln-edges-{kind}")
    env = {
        "RATE_LIMIT_PER_IP": str(PER_ADDRESS),
        "TRUSTED_PROXIES": TRUSTED_PROXY,
        "HEADER_TIMEOUT_SECONDS": str(HEAD_DEADLINE),
        # Its own queues and counters: the suite's shared production stack uses the default.
        "REDIS_NAMESPACE": f"kiln-e2e-edges-{uuid.uuid4().hex[:8]}",
    }
    async with AsyncExitStack() as resources:  # the database outlives the stack using it
        try:
            if kind == "embedded":
                stack = await asyncio.to_thread(start_embedded, data_dir, env)
            else:
                need("redis")
                database_url = await resources.enter_async_context(scratch_postgres(EDGES_DATABASE))
                stack = await asyncio.to_thread(
                    start_production, data_dir, database_url, redis_url(EDGES_REDIS_DB), env
                )
        except StackError as error:
            pytest.fail(str(error), pytrace=False)
        try:
            yield stack
        finally:
            await asyncio.to_thread(stack.stop)


@asynccontextmanager
async def calling_from(stack: Stack, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `address` (any 127.x address is local)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(
        transport=transport, base_url=stack.base_url, timeout=PATIENCE
    ) as client:
        yield client


async def operation(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any], forwarded_for: str
) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"X-Forwarded-For": forwarded_for},
    )
    body: dict[str, Any] = response.json()
    return body


def code(body: dict[str, Any]) -> str:
    errors = body.get("errors") or []
    return str(errors[0]["extensions"]["code"]) if errors else "OK"


async def sign_up(client: httpx.AsyncClient, forwarded_for: str) -> tuple[str, str]:
    email = api.unique_email()
    body = await operation(
        client, api.REGISTER, {"email": email, "password": api.PASSWORD}, forwarded_for
    )
    return email, code(body)


def fresh_address() -> str:
    return f"203.0.113.{uuid.uuid4().int % 250 + 1}"


async def test_a_rotating_forwarded_for_from_an_untrusted_peer_gets_no_fresh_limits(
    edges: Stack,
) -> None:
    """Each sign-up is 5 free credits: a fresh X-Forwarded-For per request used to be a fresh
    limit per request, for sign-ups and logins alike."""
    async with calling_from(edges, "127.0.0.1") as client:
        outcomes = [await sign_up(client, fresh_address()) for _ in range(PER_ADDRESS + 2)]
        assert [c for _, c in outcomes] == ["OK"] * PER_ADDRESS + ["RATE_LIMITED"] * 2
        email = outcomes[0][0]
        login = await operation(
            client, api.LOGIN, {"email": email, "password": api.PASSWORD}, fresh_address()
        )
        assert code(login) == "RATE_LIMITED"


async def test_a_trusted_proxys_forwarded_for_names_the_client(edges: Stack) -> None:
    async with calling_from(edges, TRUSTED_PROXY) as proxy:
        client = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
        outcomes = [await sign_up(proxy, client) for _ in range(PER_ADDRESS)]
        assert [c for _, c in outcomes] == ["OK"] * PER_ADDRESS
        # The same client again, with whatever it wrote itself left of the proxy's entry.
        _, again = await sign_up(proxy, f"{fresh_address()}, {client}")
        assert again == "RATE_LIMITED"
        # Another client behind the same proxy has its own window.
        _, other = await sign_up(proxy, fresh_address())
        assert other == "OK"


@pytest.fixture
def raw(edges: Stack) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", edges.port)) as sock:
        yield sock


def test_a_connection_that_never_sends_its_head_is_closed(raw: socket.socket) -> None:
    started = time.monotonic()
    raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: kiln.test\r\n")  # ... and nothing more
    assert read_until_closed(raw, PATIENCE).startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < PATIENCE


def test_too_many_headers_are_refused(raw: socket.socket) -> None:
    headers = b"".join(b"X-Many-%d: v\r\n" % i for i in range(500))
    raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: kiln.test\r\n" + headers + b"\r\n")
    assert read_until_closed(raw, PATIENCE).startswith(b"HTTP/1.1 431")


async def test_a_socket_message_over_the_body_cap_closes_the_socket(edges: Stack) -> None:
    async with connect(edges.ws_url, subprotocols=[SUBPROTOCOL], max_size=None) as ws:
        oversized = {"type": "connection_init", "payload": {"padding": "x" * (2 * 1024 * 1024)}}
        with pytest.raises(ConnectionClosed) as closed:
            # The server may close before the client has written it all: then send() raises.
            await ws.send(json.dumps(oversized))
            await asyncio.wait_for(ws.recv(), PATIENCE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
