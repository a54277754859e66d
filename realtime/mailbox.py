"""A subscriber's mailbox. It keeps only the newest message per key, so a slow client gets the
latest state instead of an unbounded backlog, and a state never goes backwards: a message
older than one already queued or delivered for its key is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Message = dict[str, Any]


class Mailbox:
    # One per subscription, alive as long as the subscription: no per-instance __dict__.
    __slots__ = ("_closed", "_delivered", "_latest", "_ready", "channels")

    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        self._latest: dict[str, Message] = {}
        self._delivered: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, channel: str, message: Message) -> None:
        key = str(message.get("id", channel))
        version = message.get("version", 0)
        queued = self._latest.get(key)
        if queued is not None and queued.get("version", 0) > version:
            return
        if key in self._delivered and self._delivered[key] >= version:
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
            self._ready.clear()
            while self._latest:
                key = next(iter(self._latest))
                message = self._latest.pop(key)
                self._delivered[key] = message.get("version", 0)
                yield message
            if self._closed:
                return
