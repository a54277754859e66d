"""Kiln's app in real uvicorn, run with Kiln's options (server.uvicorn_options, what
`uv run server.py` passes): request heads have a deadline and a size, headers a number,
WebSocket messages the HTTP body cap, and a client's X-Forwarded-For is not believed."""

from __future__ import annotations

import asyncio
import gc
import select
import socket
import time
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server import create_app, uvicorn_options
from settings import Settings
from tests.support.fake_server import serve
from tests.support.raw_http import read_until_closed
from web.http_protocol import KilnHttpProtocol

HEADER_TIMEOUT = 0.5
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADERS = 50
MAX_BODY = 64 * 1024
# Generous: how long a refusal may take to arrive on a busy machine.
PATIENCE = 10.0


async def echo(request: Request) -> JSONResponse:
    client = request.client
    body = await request.body()
    return JSONResponse({"client": client.host if client else None, "bodyBytes": len(body)})


async def echo_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        await websocket.send_text(await websocket.receive_text())


@pytest.fixture(scope="module")
def kiln(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(host, port) of the real app (plus two routes that show what it sees) in uvicorn."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("kiln-http"),
        header_timeout_seconds=HEADER_TIMEOUT,
        max_header_bytes=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
        max_body_bytes=MAX_BODY,
    )
    app = create_app(settings)
    app.router.routes += [
        Route("/echo", echo, methods=["GET", "POST"]),
        WebSocketRoute("/echo", echo_socket),
    ]
    with serve(app, **uvicorn_options(settings)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def read_response(sock: socket.socket) -> bytes:
    """One response (with Content-Length, as Kiln's are) from a kept-alive connection."""
    sock.settimeout(PATIENCE)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def request(path: str = "/echo", headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: kiln.test\r\n{headers}\r\n".encode()


def test_a_connection_that_sends_nothing_is_closed(kiln):
    with socket.create_connection(kiln) as sock:
        started = time.monotonic()
        assert read_until_closed(sock, PATIENCE).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < PATIENCE


def test_a_head_that_never_ends_is_closed_however_it_trickles(kiln):
    """Slowloris: a header line every 0.1 s keeps the connection busy, never complete."""
    with socket.create_connection(kiln) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: kiln.test\r\n")
        deadline = time.monotonic() + PATIENCE
        answer = b""
        for line in range(1000):
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable or time.monotonic() > deadline:
                break
            try:
                sock.sendall(b"X-Still-Here-%d: yes\r\n" % line)
            except OSError:
                break
        answer = read_until_closed(sock, PATIENCE)
    assert answer.startswith(b"HTTP/1.1 408")


def test_blank_lines_between_requests_do_not_keep_a_connection_open(kiln):
    """HTTP allows empty lines before a request; they stopped uvicorn's keep-alive timer."""
    with socket.create_connection(kiln) as sock:
        sock.sendall(request())
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                break
            try:
                sock.sendall(b"\r\n")
            except OSError:
                break
        assert read_until_closed(sock, PATIENCE).startswith(b"HTTP/1.1 408")


def test_a_huge_header_is_refused_while_it_arrives(kiln):
    """Without the bound uvicorn buffered a header of any size; here it stops reading a head
    long before 1 MiB of it arrived."""
    sent, refused = 0, b""
    with socket.create_connection(kiln) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: kiln.test\r\nX-Big: ")
        try:
            while sent < 4 * 1024 * 1024:
                readable, _, _ = select.select([sock], [], [], 0.02)
                if readable:
                    break
                sock.sendall(b"a" * 16384)
                sent += 16384
            refused = read_until_closed(sock, PATIENCE)
        except ConnectionError:
            refused = b"reset"  # closed while we were still sending: refused all the same
    assert sent < 1024 * 1024
    assert refused.startswith(b"HTTP/1.1 431") or refused == b"reset"


@pytest.mark.parametrize(
    "headers",
    [
        "".join(f"X-Many-{i}: v\r\n" for i in range(MAX_HEADERS + 1)),
        f"X-Long: {'a' * (MAX_HEADER_BYTES + 1)}\r\n",
    ],
    ids=["too many", "too long"],
)
def test_too_many_or_too_long_headers_are_431(kiln, headers):
    with socket.create_connection(kiln) as sock:
        sock.sendall(request(headers=headers))
        assert read_until_closed(sock, PATIENCE).startswith(b"HTTP/1.1 431")


def test_ordinary_requests_are_untouched(kiln):
    """Kept-alive connections idle longer than the head deadline between requests, bodies
    that arrive with their head, and pipelined requests all pass."""
    with socket.create_connection(kiln) as sock:
        sock.settimeout(PATIENCE)
        for _ in range(2):
            sock.sendall(request())
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT * 2)  # idle: uvicorn's keep-alive (5 s) is the limit here
        body = b"x" * (MAX_BODY - 1)
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: kiln.test\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200") and str(len(body)).encode() in answer
    with socket.create_connection(kiln) as sock:
        sock.sendall(request() * 20 + request(headers="Connection: close\r\n"))
        assert read_until_closed(sock, PATIENCE).count(b"HTTP/1.1 200") == 21


def test_a_clients_forwarded_for_is_not_believed(kiln):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to."""
    with socket.create_connection(kiln) as sock:
        sock.sendall(request(headers="X-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n"))
        answer = read_until_closed(sock, PATIENCE)
    assert b'"client":"127.0.0.1"' in answer


async def test_socket_messages_are_capped_like_bodies(kiln):
    host, port = kiln
    async with connect(f"ws://{host}:{port}/echo", max_size=None) as websocket:
        await asyncio.sleep(HEADER_TIMEOUT * 2)  # an open socket is not a slow head
        await websocket.send("hello")
        assert await websocket.recv() == "hello"
        await websocket.send("x" * (MAX_BODY + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), PATIENCE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def http_protocols() -> int:
    # type(): isinstance would look through weak proxies, some of them dead.
    return sum(issubclass(type(o), KilnHttpProtocol) for o in gc.get_objects())


async def test_a_connection_upgraded_to_a_socket_leaves_no_cycle(kiln):
    """The HTTP protocol a socket began with is freed when it hands the connection over, not
    kept in a cycle with its parser until a full collection (rare: server.py) with whatever
    it holds."""
    host, port = kiln
    gc.collect()
    gc.disable()
    try:
        before = http_protocols()
        for _ in range(5):
            async with connect(f"ws://{host}:{port}/echo") as websocket:
                await websocket.send("hello")
                assert await websocket.recv() == "hello"
        deadline = time.monotonic() + PATIENCE
        while (left := http_protocols()) > before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        gc.enable()
    assert left <= before
