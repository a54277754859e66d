"""Kiln's graphql-transport-ws handler (web/websocket.py) driven in-process, message by
message, over a socket stand-in that records what the handler sends."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from schema.build import build_schema
from services import auth
from tests.support.schema import request_context
from web.websocket import LimitedTransportWS

TIMEOUT = 10.0


class Socket:
    """Strawberry's socket adapter, as the handler uses it; `ws` makes direct sends (and the
    hand-off of subscriptions to the transport) possible."""

    def __init__(self) -> None:
        self.ws = self
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.received.put(json.loads(json.dumps(message)))

    async def send_text(self, text: str) -> None:
        await self.received.put(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def next(self, within: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return await self.received.get()


class _View:
    async def on_ws_connect(self, context: Any) -> None:
        return None


async def open_socket(
    settings: Any, user: Any, schema: Any = None
) -> tuple[LimitedTransportWS, Socket]:
    """A handler for `user`, its connection acknowledged; the caller shuts it down. `schema`:
    one built already for these settings (else it is built here)."""
    socket = Socket()
    token = auth.issue_token(user, settings)
    context = request_context(settings, token)
    view: Any = _View()
    adapter: Any = socket
    schema = schema or build_schema(settings)
    handler = LimitedTransportWS(view, adapter, context, None, schema, timedelta(seconds=30), 5)
    init: Any = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await handler.handle_message(init)
    assert (await socket.next())["type"] == "connection_ack"
    return handler, socket


async def start(
    handler: LimitedTransportWS, operation_id: str, query: str, **variables: Any
) -> None:
    payload = {"query": query, "variables": variables}
    message: Any = {"id": operation_id, "type": "subscribe", "payload": payload}
    await handler.handle_message(message)
