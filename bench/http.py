"""The benchmarks' HTTP client: keep-alive HTTP/1.1 over asyncio streams, one request per
connection at a time, from a pool of at most `size` connections.

The load generator shares the machine's two cores with the API it measures, so its own cost
per request counts. httpx took ~7 ms of CPU per request at 64 pooled connections (91% of a
core at 119 requests/s, measured from /proc during the accept benchmark), more than the API
it was measuring; this client writes one pre-built buffer and reads the response by its
Content-Length (or chunks), a few tens of microseconds per request.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from urllib.parse import urlsplit

# A pooled keep-alive connection the server closed just as it was reused: retried, as any
# HTTP client does (the measured loads count the retry as latency).
TRANSPORT_RETRIES = 2


class HTTPError(Exception):
    """The connection broke or the response could not be read."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class LoadClient:
    """`post()` from any number of tasks; at most `size` connections are open, and a task
    waits for a free one beyond that."""

    def __init__(self, base_url: str, size: int, timeout: float) -> None:
        url = urlsplit(base_url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.timeout = timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Connection] = []

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of a POST with a JSON body."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode()
        return await self._send(head + body)

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of a GET."""
        head = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        return await self._send(head.encode())

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        async with self._slots:
            for attempt in range(TRANSPORT_RETRIES + 1):
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                try:
                    status, answer, keep = await asyncio.wait_for(
                        _exchange(connection, request), self.timeout
                    )
                except (OSError, asyncio.IncompleteReadError, HTTPError) as error:
                    connection.close()
                    if attempt == TRANSPORT_RETRIES or not reused:
                        raise HTTPError(repr(error)) from error
                    continue
                except BaseException:
                    connection.close()
                    raise
                if keep:
                    self._idle.append(connection)
                else:
                    connection.close()
                return status, answer
        raise AssertionError("unreachable")

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)


async def _exchange(connection: _Connection, request: bytes) -> tuple[int, bytes, bool]:
    """Send one request; (status, body, whether the connection may be reused)."""
    connection.writer.write(request)
    head = await connection.reader.readuntil(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HTTPError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await connection.reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(connection.reader)
    else:
        raise HTTPError("response without Content-Length or chunked encoding")
    keep = headers.get(b"connection", b"").lower() != b"close"
    return status, body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are sent to this client
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
