"""An HTTP request to an ASGI app whose response body is read as it is sent: httpx's
ASGITransport collects the whole body first, so it never returns from a response that streams
until the client leaves (a subscription over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

TIMEOUT = 10.0


@dataclass
class Streamed:
    status: int
    headers: dict[str, str]
    _chunks: asyncio.Queue[bytes | None] = field(repr=False)
    ended: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """Each body chunk as the app sent it, until the app ends the body."""
        while not self.ended:
            async with asyncio.timeout(TIMEOUT):
                chunk = await self._chunks.get()
            if chunk is None:
                self.ended = True
                return
            yield chunk

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


@contextlib.asynccontextmanager
async def stream(
    app: Any,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    query_string: str = "",
) -> AsyncIterator[Streamed]:
    """Sends the request; the response's status and headers are read before this enters, its
    body through `chunks()`. Leaving disconnects the client, as a closed browser tab does."""
    body = orjson.dumps(json) if json is not None else b""
    sent = [(b"host", b"kiln.test")]
    if json is not None:
        sent.append((b"content-type", b"application/json"))
    sent += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string.encode(),
        "root_path": "",
        "headers": sent,
        "client": ("203.0.113.9", 50000),
        "server": ("kiln.test", 80),
    }
    gone = asyncio.Event()
    request_sent = False
    started: asyncio.Future[tuple[int, dict[str, str]]] = asyncio.get_running_loop().create_future()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response_headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            started.set_result((message["status"], response_headers))
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await chunks.put(message["body"])
            if not message.get("more_body", False):
                await chunks.put(None)

    task = asyncio.create_task(app(scope, receive, send))
    try:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            task.result()  # the app failed before answering: raise its error
            raise AssertionError("the app ended without a response")
        status, response_headers = started.result()
        yield Streamed(status, response_headers, chunks)
    finally:
        gone.set()
        try:
            async with asyncio.timeout(TIMEOUT):
                await task
        except TimeoutError:
            task.cancel()
            raise
