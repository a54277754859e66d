"""Whose X-Forwarded-For is believed: only a trusted proxy's (TRUSTED_PROXIES), never a
client's, so rate limits and logs key on the real client."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from settings import Settings
from web.proxy import add_trusted_proxy_headers


async def whoami(request: Request) -> JSONResponse:
    client = request.client
    return JSONResponse({"client": client.host if client else None, "scheme": request.url.scheme})


async def socket_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    client = websocket.client
    await websocket.send_json({"client": client.host if client else None})
    await websocket.close()


def app_trusting(tmp_path, proxies: str) -> Starlette:
    app = Starlette(routes=[Route("/", whoami), WebSocketRoute("/ws", socket_whoami)])
    add_trusted_proxy_headers(app, Settings(data_dir=tmp_path, trusted_proxies=proxies))
    return app


async def seen(app: Starlette, peer: str, headers: dict[str, str]) -> dict[str, str]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as client:
        response = await client.get("/", headers=headers)
    return response.json()


SPOOFED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "10.0.0.5"])
async def test_nobody_is_trusted_by_default(tmp_path, peer):
    """uvicorn's own default would believe 127.0.0.1: a rotating header from there was a fresh
    address (and a fresh rate limit) for every request."""
    assert await seen(app_trusting(tmp_path, ""), peer, SPOOFED) == {
        "client": peer,
        "scheme": "http",
    }


async def test_a_trusted_proxys_headers_name_the_client(tmp_path):
    app = app_trusting(tmp_path, "10.0.0.5")
    assert await seen(app, "10.0.0.5", SPOOFED) == {"client": "203.0.113.7", "scheme": "https"}
    # Anyone else's are ignored.
    assert await seen(app, "10.0.0.6", SPOOFED) == {"client": "10.0.0.6", "scheme": "http"}


async def test_what_a_client_writes_left_of_the_proxys_entry_is_not_believed(tmp_path):
    """The proxy appends the address it saw: the right-most untrusted entry is the client."""
    app = app_trusting(tmp_path, "10.0.0.0/8")
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
    assert (await seen(app, "10.0.0.5", forwarded))["client"] == "203.0.113.7"


async def socket_seen(app: Starlette, peer: str, headers: dict[str, str]) -> object:
    """One WebSocket handshake straight through the ASGI app; what the app sent back."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "server": ("kiln.test", 80),
        "client": (peer, 40000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "subprotocols": [],
    }
    incoming: list[MutableMapping[str, Any]] = [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return next(orjson.loads(m["text"]) for m in sent if m["type"] == "websocket.send")


async def test_sockets_through_a_trusted_proxy_see_the_client(tmp_path):
    app = app_trusting(tmp_path, "10.0.0.5")
    assert await socket_seen(app, "10.0.0.5", SPOOFED) == {"client": "203.0.113.7"}
    assert await socket_seen(app, "10.0.0.6", SPOOFED) == {"client": "10.0.0.6"}
