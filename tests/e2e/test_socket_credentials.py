"""Sockets check their credential on every operation, and close when it goes bad, against the
real processes: a revoked API key, an expired token and an admin demoted straight in the
database, in every API process (production runs a second uvicorn against the same PostgreSQL
and Redis); connection_init read in any letter case; 4403 close reasons that name the fault.

What an outside security test found: a socket opened with a key kept working after the key
was revoked (and could mint a new key); a token that had expired still ran operations on its
open socket; a demoted admin kept creditAudit and errorEventStream on an open socket."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e import api
from tests.e2e.client import SUBPROTOCOL, GraphQLSocket, KilnClient, Subscription
from tests.e2e.conftest import Running
from tests.e2e.stack import Stack, create_admin, free_port, start_embedded

# The bound: running subscriptions of a credential gone bad end within this.
ENDS_WITHIN = 5.0
# Tokens of the short-lived API live this long (`exp` is whole seconds: at least 3 s left).
SHORT_TTL = 4
ADMIN_PASSWORD = "an admin password"
NEW_KEY = 'mutation { createApiKey(name: "minted on a dead socket") { secret } }'
AUDIT = "query { creditAudit { ok } }"
ERRORS = "subscription { errorEventStream { id } }"
ME = "query { me { id } }"


class Api:
    """Another API process of the same deployment (or, embedded, a deployment of its own)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = KilnClient(stack.base_url)

    @property
    def ws_url(self) -> str:
        return self.stack.ws_url


@pytest.fixture(scope="module")
async def second_api(
    stack: Running, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    """A second API process, whose tokens live SHORT_TTL seconds. In production a second
    uvicorn against the stack's own database and Redis (what one signs, the other accepts);
    embedded, where one process is the whole deployment, a server of its own."""
    tmp_path = tmp_path_factory.mktemp(f"second-api-{stack.kind}")
    if stack.kind == "production":
        main = stack.stack.process("api")
        other = Stack("production", free_port(), tmp_path, stack.stack.catalogue_path)
        args = [*main.args[: main.args.index("--port") + 1], str(other.port)]
        other.spawn("api-2", args, {**main.env, "JWT_TTL_SECONDS": str(SHORT_TTL)})
        try:
            await asyncio.to_thread(other.wait_ready)
        except BaseException:
            await asyncio.to_thread(other.stop)
            raise
    else:
        other = await asyncio.to_thread(
            start_embedded, tmp_path, {"JWT_TTL_SECONDS": str(SHORT_TTL)}
        )
    api_process = Api(other)
    try:
        yield api_process
    finally:
        await api_process.client.aclose()
        await asyncio.to_thread(other.stop)
        print(other.logs(60))  # shown when the test failed


def every_api(stack: Running, short: Api) -> list[str]:
    """The socket URLs of every API process of the stack's deployment."""
    return [stack.ws_url, short.ws_url] if stack.kind == "production" else [stack.ws_url]


async def close_of(url: str, init_payload: dict[str, Any]) -> tuple[int | None, str]:
    """Open a socket, send connection_init with `init_payload`, and return how the server
    closed it (code, reason)."""
    async with asyncio.timeout(15):
        async with connect(url, subprotocols=[SUBPROTOCOL]) as websocket:
            await websocket.send(json.dumps({"type": "connection_init", "payload": init_payload}))
            try:
                message = json.loads(await websocket.recv())
                raise AssertionError(f"expected the socket to be closed, got {message}")
            except ConnectionClosed:
                pass
            return websocket.close_code, websocket.close_reason or ""


async def acked(url: str, init_payload: dict[str, Any]) -> dict[str, Any]:
    """connection_init with `init_payload`, then `me` on the socket: its data."""
    async with asyncio.timeout(15):
        async with connect(url, subprotocols=[SUBPROTOCOL]) as websocket:
            await websocket.send(json.dumps({"type": "connection_init", "payload": init_payload}))
            ack = json.loads(await websocket.recv())
            assert ack["type"] == "connection_ack", (ack, websocket.close_reason)
            await websocket.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": ME}})
            )
            answer = json.loads(await websocket.recv())
            assert answer["type"] == "next", answer
            data: dict[str, Any] = answer["payload"]["data"]
            return data


def error_code(kind: str, payload: Any) -> str | None:
    """The code of an operation's first answer: an `error` message or a `next` with errors."""
    if kind == "error":
        return str(payload[0]["extensions"]["code"])
    if kind == "next" and payload.get("errors"):
        return str(payload["errors"][0]["extensions"]["code"])
    return None


async def closed_for(socket: GraphQLSocket, subscription: Subscription) -> str:
    """Waits (ENDS_WITHIN) until the server closes the socket of a running subscription with
    4403; the close reason."""
    kind, payload = await subscription.receive(ENDS_WITHIN)
    assert (kind, payload) == ("closed", 4403), (kind, payload)
    return socket.websocket.close_reason or ""


async def running(url: str, token: str, query: str) -> tuple[GraphQLSocket, Subscription]:
    socket = await GraphQLSocket.open(url, token)
    subscription = await socket.subscribe(query)
    return socket, subscription


async def test_a_revoked_key_ends_its_sockets_in_every_api_process(
    stack: Running, second_api: Api
) -> None:
    account = await api.register(stack.client)
    created = await api.create_api_key(stack.client, account, "deploy bot")
    secret, key_id = created["secret"], created["apiKey"]["id"]
    urls = every_api(stack, second_api)
    watching = [await running(url, secret, api.BALANCE_CHANGED) for url in urls]
    for _, subscription in watching:
        assert await subscription.next() is not None  # the current balance: it works
    idle = await GraphQLSocket.open(stack.ws_url, secret)
    try:
        await stack.client.data(api.REVOKE_API_KEY, {"id": key_id}, account.token)

        # A new operation is refused at once (unless the watcher closed the socket first),
        # and the socket is closed: its credential will not work again.
        mint = await idle.subscribe(NEW_KEY)
        kind, payload = await mint.receive()
        assert kind == "closed" or error_code(kind, payload) == "UNAUTHENTICATED", payload
        while kind != "closed":
            kind, payload = await mint.receive(ENDS_WITHIN)
        assert payload == 4403
        reason = idle.websocket.close_reason or ""
        # Every running subscription, in every process, ends within seconds.
        for socket, subscription in watching:
            assert (await closed_for(socket, subscription)).startswith("revoked:")
        assert reason.startswith("revoked:"), reason
    finally:
        await idle.close()
        for socket, _ in watching:
            await socket.close()
    assert (await stack.client.data(api.API_KEYS, token=account.token))["apiKeys"] == []
    code, reason = await close_of(stack.ws_url, {"authorization": f"Bearer {secret}"})
    assert code == 4403 and reason.startswith("revoked:"), reason


async def test_a_socket_is_closed_when_its_token_expires(stack: Running, second_api: Api) -> None:
    account = await api.register(second_api.client)
    expires = jwt.decode(account.token, options={"verify_signature": False})["exp"]
    # Production: both API processes accept the token the short-lived one signed.
    urls = [second_api.ws_url, *([stack.ws_url] if stack.kind == "production" else [])]
    watching = [await running(url, account.token, api.BALANCE_CHANGED) for url in urls]
    try:
        for _, subscription in watching:
            assert await subscription.next() is not None
        for socket, subscription in watching:
            kind, payload = await subscription.receive(expires - time.time() + ENDS_WITHIN)
            assert (kind, payload) == ("closed", 4403), (kind, payload)
            assert (socket.websocket.close_reason or "").startswith("expired:")
        assert time.time() >= expires - 0.5  # not before its time
    finally:
        for socket, _ in watching:
            await socket.close()
    create = await second_api.client.error(api.CREATE, {"input": api.image_input()}, account.token)
    assert create["extensions"]["code"] == "UNAUTHENTICATED"
    code, reason = await close_of(second_api.ws_url, {"authorization": f"Bearer {account.token}"})
    assert code == 4403 and reason.startswith("expired:"), reason


async def demote(stack: Running, email: str) -> None:
    """An operator's UPDATE, straight into the database: no Kiln process is told."""
    if stack.kind == "production":
        connection = await asyncpg.connect(stack.stack.process("api").env["DATABASE_URL"])
        try:
            await connection.execute("UPDATE users SET role = 'USER' WHERE email = $1", email)
        finally:
            await connection.close()
        return

    def update() -> None:
        with sqlite3.connect(stack.stack.data_dir / "kiln.sqlite3", timeout=10) as database:
            database.execute("UPDATE users SET role = 'USER' WHERE email = ?", (email,))

    await asyncio.to_thread(update)


async def test_an_admin_demoted_in_the_database_loses_admin_operations(
    stack: Running, second_api: Api
) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    await asyncio.to_thread(create_admin, stack.stack, email, ADMIN_PASSWORD)
    login = await stack.client.data(api.LOGIN, {"email": email, "password": ADMIN_PASSWORD})
    token = login["login"]["token"]
    urls = every_api(stack, second_api)
    streams = [await running(url, token, ERRORS) for url in urls]
    socket = streams[0][0]
    try:
        audit = await socket.subscribe(AUDIT)
        assert (await audit.next()) == {"creditAudit": {"ok": True}}
        await demote(stack, email)

        audit = await socket.subscribe(AUDIT)
        kind, payload = await audit.receive()
        assert error_code(kind, payload) == "FORBIDDEN", (kind, payload)
        for _, stream in streams:
            kind, payload = await stream.receive(ENDS_WITHIN)
            assert error_code(kind, payload) == "FORBIDDEN", (kind, payload)
        # Still an account: what a user may do goes on, on the same socket.
        me = await socket.subscribe(ME)
        assert await me.next() is not None
    finally:
        for open_socket, _ in streams:
            await open_socket.close()


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda value: {"authorization": value}, id="authorization"),
        pytest.param(lambda value: {"Authorization": value}, id="Authorization"),
        pytest.param(lambda value: {"headers": {"Authorization": value}}, id="headers"),
    ],
)
async def test_connection_init_reads_authorization_in_any_case(stack: Running, shape) -> None:
    account = await api.register(stack.client)
    data = await acked(stack.ws_url, shape(f"Bearer {account.token}"))
    assert data["me"]["id"] == account.user_id


async def test_refused_sockets_say_why(stack: Running) -> None:
    forged = jwt.encode({"sub": str(uuid.uuid4()), "exp": 9999999999}, "f" * 32, "HS256")
    cases = {
        "missing": {},
        "malformed": {"Authorization": "Token abc"},
        "invalid": {"authorization": f"Bearer {forged}"},
    }
    for reason_first, payload in cases.items():
        code, reason = await close_of(stack.ws_url, payload)
        assert code == 4403 and reason.startswith(f"{reason_first}:"), (payload, reason)
