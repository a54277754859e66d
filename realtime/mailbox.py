"""A subscriber's mailbox. It keeps only the newest message per key, so a slow client gets the
latest state instead of an unbounded backlog, and a state never goes backwards: a message not
newer than one already queued or delivered for its key is dropped (realtime/versions.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from realtime.versions import newer

Message = dict[str, Any]


def key_of(channel: str, message: Message) -> str:
    """What a message is the state of: its generation (by id), else its channel (a balance)."""
    return str(message.get("id", channel))


class Mailbox:
    # One per subscription, alive as long as the subscription: no per-instance __dict__.
    __slots__ = ("_closed", "_last", "_latest", "_ready", "channels")

    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        self._latest: dict[str, Message] = {}
        # The newest version accepted per key, queued or delivered.
        self._last: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._closed = False

    def sent(self, key: str, version: int) -> None:
        """The subscriber sent this state itself (its first read of the database): only newer
        ones are to come out, including of what was queued before the read."""
        newer(self._last, key, version)
        queued = self._latest.get(key)
        if queued is not None and queued.get("version", 0) <= version:
            del self._latest[key]

    def put(self, channel: str, message: Message) -> None:
        key = key_of(channel, message)
        if not newer(self._last, key, message.get("version", 0)):
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
                yield self._latest.pop(key)
            if self._closed:
                return
