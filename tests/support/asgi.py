"""An ASGI app called directly, as uvicorn calls it, with nothing of a client library in
between: what a test measures of the objects a request leaves behind is then the app's own
(httpx's in-process transport, for one, leaves a reference cycle per response)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson

TIMEOUT = 10.0


def _scope(kind: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"kiln.test")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.9", 50000),
        "server": ("kiln.test", 80),
        "state": {},
    }


async def post_json(
    app: Any, path: str, body: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    """POSTs `body` as JSON; the status and the parsed JSON answer."""
    scope = _scope("http", path, {"content-type": "application/json", **(headers or {})})
    scope["method"] = "POST"
    request: list[dict[str, Any]] = [
        {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if request:
            return request.pop()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with asyncio.timeout(TIMEOUT):
        await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status, orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))


class Socket:
    """A WebSocket client speaking graphql-transport-ws to the app, message by message."""

    def __init__(self, app: Any, path: str = "/graphql") -> None:
        self.scope = _scope("websocket", path, {"sec-websocket-protocol": "graphql-transport-ws"})
        self.scope["subprotocols"] = ["graphql-transport-ws"]
        self.app = app
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Socket:
        await self.to_app.put({"type": "websocket.connect"})
        self.task = asyncio.create_task(self.app(self.scope, self.to_app.get, self.from_app.put))
        async with asyncio.timeout(TIMEOUT):
            accepted = await self.from_app.get()
        assert accepted["type"] == "websocket.accept", accepted
        return self

    async def send(self, message: Any) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": orjson.dumps(message).decode()})

    async def receive(self) -> Any:
        async with asyncio.timeout(TIMEOUT):
            message = await self.from_app.get()
        assert message["type"] == "websocket.send", message
        return orjson.loads(message.get("text") or message["bytes"])

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        async with asyncio.timeout(TIMEOUT):
            await self.task
        self.task = None
