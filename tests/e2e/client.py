"""A small GraphQL client for the end-to-end tests: queries over HTTP, subscriptions over a
graphql-transport-ws WebSocket. Every wait has a timeout, so a hang fails the test instead
of stalling the run."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOL = Subprotocol("graphql-transport-ws")
HTTP_TIMEOUT = 15.0
WS_TIMEOUT = 15.0


class GraphQLError(AssertionError):
    """A response carried errors where the test expected data."""


class KilnClient:
    """POST /graphql, plus plain HTTP for the other routes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """The whole JSON response: {"data": ..., "errors": [...]}."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.headers.get("content-type", "").startswith("application/json"), (
            response.status_code,
            response.text[:500],
        )
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The response's data; fails the test if any error came back."""
        body = await self.gql(query, variables, token)
        if body.get("errors"):
            raise GraphQLError(f"unexpected GraphQL errors: {json.dumps(body['errors'])}")
        data: dict[str, Any] = body["data"]
        return data

    async def error(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The response's one error; fails the test if there was none."""
        body = await self.gql(query, variables, token)
        errors = body.get("errors") or []
        assert len(errors) == 1, f"expected exactly one error, got {json.dumps(body)}"
        error: dict[str, Any] = errors[0]
        return error


class SubscriptionFailed(AssertionError):
    """The server answered a subscription with an `error` message, or the socket closed."""


class Subscription:
    def __init__(self, socket: GraphQLSocket, operation_id: str) -> None:
        self.socket = socket
        self.id = operation_id
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.completed = False

    async def receive(self, within: float = WS_TIMEOUT) -> tuple[str, Any]:
        """The next raw protocol message for this operation: ("next", payload),
        ("error", errors), ("complete", None) or ("closed", close code)."""
        try:
            async with asyncio.timeout(within):
                kind, payload = await self.queue.get()
        except TimeoutError:
            raise AssertionError(
                f"subscription {self.id}: nothing arrived within {within}s"
            ) from None
        if kind != "next":
            self.completed = True
        return kind, payload

    async def next(self, within: float = WS_TIMEOUT) -> dict[str, Any] | None:
        """The next `next` payload's data, or None once the server completed the operation.
        Raises SubscriptionFailed on errors, an `error` message or a closed socket."""
        if self.completed:
            return None
        kind, payload = await self.receive(within)
        if kind == "next":
            if payload.get("errors"):
                raise SubscriptionFailed(f"errors in a `next` message: {json.dumps(payload)}")
            data: dict[str, Any] = payload["data"]
            return data
        if kind == "complete":
            return None
        if kind == "error":
            raise SubscriptionFailed(f"subscription error: {json.dumps(payload)}")
        raise SubscriptionFailed(f"socket closed during the subscription: {payload}")

    async def collect(self, within: float = WS_TIMEOUT) -> list[dict[str, Any]]:
        """Every message until the server completes the operation (all within `within` s)."""
        messages = []
        try:
            async with asyncio.timeout(within):
                while (data := await self.next(within)) is not None:
                    messages.append(data)
        except TimeoutError:
            raise AssertionError(
                f"subscription {self.id} did not complete within {within}s; got {messages}"
            ) from None
        return messages

    async def collect_until(
        self, done: Callable[[dict[str, Any]], bool], within: float = WS_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Messages up to and including the first for which `done` is true."""
        messages: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    data = await self.next(within)
                    if data is None:
                        raise AssertionError(
                            f"subscription {self.id} completed early; got {messages}"
                        )
                    messages.append(data)
                    if done(data):
                        return messages
        except TimeoutError:
            raise AssertionError(
                f"subscription {self.id}: condition not met within {within}s; got {messages}"
            ) from None

    async def stop(self) -> None:
        """Tell the server we are done with this operation."""
        if not self.completed:
            self.completed = True
            await self.socket.send({"id": self.id, "type": "complete"})


class GraphQLSocket:
    """One graphql-transport-ws connection; any number of subscriptions on it."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None

    @classmethod
    async def open(cls, url: str, token: str | None, within: float = WS_TIMEOUT) -> GraphQLSocket:
        """Connect, send connection_init with the token and wait for connection_ack."""
        async with asyncio.timeout(within):
            websocket = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=within)
            try:
                payload = {"authorization": f"Bearer {token}"} if token else {}
                await websocket.send(json.dumps({"type": "connection_init", "payload": payload}))
                ack = json.loads(await websocket.recv())
                assert ack["type"] == "connection_ack", ack
            except BaseException:
                await websocket.close()
                raise
        socket = cls(websocket)
        socket._reader = asyncio.create_task(socket._read())
        return socket

    async def send(self, message: dict[str, Any]) -> None:
        async with asyncio.timeout(WS_TIMEOUT):
            await self.websocket.send(json.dumps(message))

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Subscription:
        operation_id = str(next(self._ids))
        subscription = Subscription(self, operation_id)
        self.subscriptions[operation_id] = subscription
        await self.send(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return subscription

    async def _read(self) -> None:
        try:
            async for raw in self.websocket:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await self.websocket.send(json.dumps({"type": "pong"}))
                    continue
                subscription = self.subscriptions.get(message.get("id", ""))
                if subscription is not None and kind in ("next", "error", "complete"):
                    subscription.queue.put_nowait((kind, message.get("payload")))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.websocket.close_code
            for subscription in self.subscriptions.values():
                subscription.queue.put_nowait(("closed", self.close_code))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.websocket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def __aenter__(self) -> GraphQLSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def close_code_of(
    url: str, init_payload: dict[str, Any] | None, within: float = WS_TIMEOUT
) -> int | None:
    """Open a raw socket, send connection_init with `init_payload` (nothing when None) and
    return the code the server closes the socket with."""
    async with asyncio.timeout(within):
        async with connect(url, subprotocols=[SUBPROTOCOL], open_timeout=within) as websocket:
            assert websocket.subprotocol == SUBPROTOCOL
            if init_payload is not None:
                await websocket.send(
                    json.dumps({"type": "connection_init", "payload": init_payload})
                )
            try:
                async for raw in websocket:
                    message = json.loads(raw)
                    if message.get("type") == "ping":
                        await websocket.send(json.dumps({"type": "pong"}))
                        continue
                    raise AssertionError(f"expected the socket to be closed, got {message}")
            except ConnectionClosed:
                pass
            return websocket.close_code


async def handshake(url: str, headers: dict[str, str], within: float = WS_TIMEOUT) -> Headers:
    """The headers of the server's answer to a graphql-transport-ws upgrade request."""
    async with asyncio.timeout(within):
        async with connect(
            url, subprotocols=[SUBPROTOCOL], additional_headers=headers, open_timeout=within
        ) as websocket:
            response = websocket.response
            assert response is not None
            assert response.status_code == 101, response.status_code
            return response.headers
