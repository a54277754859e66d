"""The pub/sub hub. In-process for embedded mode; Redis for production, where each API process
holds exactly one pub/sub connection and subscribes to a channel only while a local client
listens on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis.asyncio as aioredis

from realtime.mailbox import Mailbox, Message

log = logging.getLogger(__name__)


class Hub:
    """Local fan-out shared by both hubs: channel -> the mailboxes of this process."""

    def __init__(self) -> None:
        self._local: dict[str, set[Mailbox]] = defaultdict(set)
        # The backend subscription of each channel; every local subscriber awaits it.
        self._live: dict[str, asyncio.Future[None]] = {}

    async def publish(self, channel: str, message: Message) -> None:
        raise NotImplementedError

    async def publish_many(self, publications: list[tuple[str, Message]]) -> None:
        """Several messages, in order. One that fails is logged and skips none of the others
        (a lost message is made good by the next change or the subscriber's initial read)."""
        for channel, message in publications:
            try:
                await self.publish(channel, message)
            except Exception:
                log.exception("publish to %s failed", channel)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for boxes in self._local.values():
            for box in boxes:
                box.close()
        self._local.clear()

    async def ping(self) -> None:
        return None

    def _dispatch(self, channel: str, message: Message) -> None:
        for box in tuple(self._local.get(channel, ())):
            box.put(channel, message)

    async def _listen(self, channel: str) -> None:
        """Start receiving `channel` from the backend (first local subscriber)."""

    async def _unlisten(self, channel: str) -> None:
        """Stop receiving `channel` (last local subscriber left)."""

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Mailbox]:
        """Returns once the subscription is live, so a read made afterwards misses nothing."""
        box = await self.attach(*channels)
        try:
            yield box
        finally:
            await self.detach(box)

    async def attach(self, *channels: str) -> Mailbox:
        """`subscribe` for a caller that hands its mailbox on to another owner (the WebSocket
        transport keeps a subscription's mailbox once its resolver has returned): live when
        this returns, and received until `detach`."""
        box = Mailbox(channels)
        try:
            for channel in channels:
                self._local[channel].add(box)
                live = self._live.get(channel)
                if live is None:
                    live = self._live[channel] = asyncio.ensure_future(self._listen(channel))
                await asyncio.shield(live)
        except BaseException:
            await self.detach(box)
            raise
        return box

    async def detach(self, box: Mailbox) -> None:
        """Ends `box` and stops receiving its channels here once nobody else listens; a box
        already detached is left alone."""
        box.close()
        for channel in box.channels:
            boxes = self._local.get(channel)
            if boxes is None or box not in boxes:
                continue
            boxes.discard(box)
            if not boxes:
                del self._local[channel]
                live = self._live.pop(channel, None)
                if live is not None and not live.done():
                    live.cancel()
                with contextlib.suppress(Exception):
                    await self._unlisten(channel)

    @property
    def local_subscriptions(self) -> int:
        return sum(len(boxes) for boxes in self._local.values())


class InProcessHub(Hub):
    async def publish(self, channel: str, message: Message) -> None:
        self._dispatch(channel, message)


class RedisHub(Hub):
    def __init__(self, url: str) -> None:
        super().__init__()
        self._redis = aioredis.Redis.from_url(url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._connecting = asyncio.Lock()

    @staticmethod
    def encode(message: Message) -> bytes:
        """A message as this hub sends it (a pipeline of the caller's may carry it)."""
        return orjson.dumps(message)

    async def publish(self, channel: str, message: Message) -> None:
        await self._redis.publish(channel, self.encode(message))

    async def publish_many(self, publications: list[tuple[str, Message]]) -> None:
        """In one round trip (a pipeline without MULTI: each PUBLISH stands alone)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, message in publications:
                pipe.publish(channel, self.encode(message))
            await pipe.execute()

    async def ping(self) -> None:
        await self._redis.ping()

    async def _ensure_reader(self) -> None:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        if self._pubsub.connection is None:
            # redis-py opens the pub/sub connection on the first SUBSCRIBE, and concurrent
            # first SUBSCRIBEs would each open one (only the last is read: the others'
            # confirmations never arrive). Opened once, before any of them.
            async with self._connecting:
                if self._pubsub.connection is None:
                    await self._pubsub.connect()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_forever(), name="kiln-pubsub-reader")

    async def _listen(self, channel: str) -> None:
        await self._ensure_reader()
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        await self._pubsub.subscribe(channel)
        await asyncio.wait_for(confirmed, timeout=10)

    async def _unlisten(self, channel: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        while True:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.01)
                    continue
                raw = await self._pubsub.get_message(timeout=1.0)
                if raw is None:
                    continue
                kind = raw["type"]
                channel = raw["channel"].decode()
                if kind == "message":
                    self._dispatch(channel, orjson.loads(raw["data"]))
                elif kind == "subscribe":
                    confirmed = self._confirmations.pop(channel, None)
                    if confirmed is not None and not confirmed.done():
                        confirmed.set_result(None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pub/sub reader failed; reconnecting")
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        await super().close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._redis.aclose()


_hub: Hub | None = None


def get_hub() -> Hub:
    if _hub is None:
        raise RuntimeError("the pub/sub hub is not started")
    return _hub


def set_hub(hub: Hub | None) -> None:
    global _hub
    _hub = hub


def make_hub(redis_url: str) -> Hub:
    return RedisHub(redis_url) if redis_url else InProcessHub()
