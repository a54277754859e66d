"""ASGI middleware around every request and socket: request ids, the socket gauge, the body cap."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from observability import logs, metrics


class RequestId:
    """Gives every HTTP request and socket an id (or keeps the caller's X-Request-ID) and
    returns it in the X-Request-ID header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given[:64] if given.isprintable() and given else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Any) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # Every log line written while handling it carries the id.
        with logs.bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class SocketGauge:
    """Counts open WebSocket connections (kiln_websocket_connections)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()


class BodyLimit:
    """Refuses HTTP request bodies over `max_bytes` with 413, by Content-Length when given
    and by counting the bytes as they arrive when not (chunked uploads)."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyLimit._TooLarge()
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyLimit._TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "errors": [
                    {
                        "message": f"Request bodies are limited to {self.max_bytes} bytes.",
                        "extensions": {"code": "BAD_USER_INPUT"},
                    }
                ]
            },
            status_code=413,
        )
        await response(scope, receive, send)
