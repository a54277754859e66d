"""A cap on the size and number of a request's headers, which uvicorn's httptools parser does
not have (it keeps every header it is sent). Requests and socket handshakes over either cap are
refused before anything else reads them: HTTP with 431, sockets closed before they are
accepted (uvicorn answers 403). The bytes a head may take *while it arrives* are bounded by
web/http_protocol.py; this is the exact count of what arrived."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class HeadLimits:
    def __init__(self, app: ASGIApp, max_bytes: int, max_count: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._too_large(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            response = JSONResponse(
                {
                    "errors": [
                        {
                            "message": f"Request headers are limited to {self.max_count} "
                            f"headers and {self.max_bytes} bytes.",
                            "extensions": {"code": "BAD_USER_INPUT"},
                        }
                    ]
                },
                status_code=431,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _too_large(self, scope: Scope) -> bool:
        headers = scope["headers"]
        if len(headers) > self.max_count:
            return True
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for name, value in headers:
            size += len(name) + len(value)
        return size > self.max_bytes
