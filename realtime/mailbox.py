"""A subscriber's mailbox. It keeps only the newest message per key, so a slow client gets the
latest state instead of an unbounded backlog, and a final state is never pushed out by an
older one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Message = dict[str, Any]


class Mailbox:
    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        self._latest: dict[str, Message] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, channel: str, message: Message) -> None:
        key = str(message.get("id", channel))
        current = self._latest.get(key)
        if current is not None and current.get("version", 0) > message.get("version", 0):
            return
        self._latest.pop(key, None)  # re-insert so keys stay in arrival order
        self._latest[key] = message
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            await self._ready.wait()
            if self._closed and not self._latest:
                return
            self._ready.clear()
            while self._latest:
                key = next(iter(self._latest))
                yield self._latest.pop(key)
