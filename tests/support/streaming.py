"""Subscriptions over HTTP in tests: an HTTP request to an ASGI app whose response body is
read as it is sent (httpx's ASGITransport collects the whole body first, so it never returns
from a response that streams until the client leaves), and the two stream formats read as
Apollo Client and urql read them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
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


async def multipart_parts(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> AsyncIterator[Any]:
    """Each part of a multipart subscription body as it arrives (`{}` heartbeats included),
    read as Apollo Client reads it (link/http/parseAndCheckHttpResponse.ts): split on CRLF and
    the boundary, a part's JSON after its blank line, and done after the closing boundary,
    which must come."""
    assert headers["content-type"].startswith("multipart/mixed")
    assert "boundary=graphql" in headers["content-type"]
    boundary = b"\r\n--graphql"
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while boundary in buffer and not buffer.startswith(b"--\r\n"):
            message, buffer = buffer.split(boundary, 1)
            head, separator, body = message.partition(b"\r\n\r\n")
            if separator:
                assert b"content-type: application/json" in head.lower(), head
                yield orjson.loads(body)
        if buffer.startswith(b"--\r\n"):
            assert buffer == b"--\r\n", buffer
            return
    raise AssertionError(f"the body ended without its closing boundary: {buffer[-60:]!r}")


async def payloads(parts: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The events of a multipart body, heartbeats (`{}`) left out."""
    async for part in parts:
        if part:
            assert list(part) == ["payload"], part
            yield part["payload"]


async def sse_events(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each event as it arrives, split on blank lines of LFs as urql splits
    them; comments (heartbeats) left out."""
    assert headers["content-type"].startswith("text/event-stream")
    buffer = ""
    async for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith(":"):
                continue
            fields = {}
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            yield fields["event"], fields["data"]
    assert buffer == "", buffer
