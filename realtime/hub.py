"""The pub/sub hub. In-process for embedded mode; Redis for production, where each API process
holds exactly one pub/sub connection and subscribes to a channel only while a local client
listens on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.backoff import Backoff
from realtime.mailbox import Mailbox, Message

log = logging.getLogger(__name__)

# The current state of the channels followed here, as messages: (channels, lost at) ->
# [(channel, message)] (realtime/catch_up.py).
CatchUp = Callable[[Collection[str], datetime], Awaitable[list[tuple[str, Message]]]]


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
        (subscribers' hubs re-read what they missed: RedisHub)."""
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


RECONNECT = Backoff(first=0.1, cap=5.0)


class RedisHub(Hub):
    """The pub/sub connection is this hub's own: one reader task opens it at the first
    subscription, reads it, and when it drops opens it again, after a capped and jittered
    backoff (realtime/backoff.py), subscribed to every channel a local subscriber listens on.
    Whatever was published meanwhile is lost for this process (Redis keeps nothing for a
    subscriber that is away), so once it is subscribed again the hub re-reads the current
    state of what its subscribers follow (`catch_up`, realtime/catch_up.py) and hands it to
    their mailboxes, which keep only what is newer than what each subscriber has."""

    # Silence on the connection for this long sends a PING; no answer for as long again counts
    # as a lost connection (a Redis that accepts but does not answer, a dead peer).
    PING_AFTER = 5.0
    # A connection or (re)subscription Redis does not answer within this long fails (or is
    # tried again).
    CONFIRM_TIMEOUT = 10.0

    def __init__(
        self, url: str, *, catch_up: CatchUp | None = None, backoff: Backoff = RECONNECT
    ) -> None:
        super().__init__()
        self._redis = aioredis.Redis.from_url(url)
        # No retries inside redis-py for the pub/sub connection: a drop must reach the reader,
        # which reconnects and catches up, never be mended silently (and re-subscribed by
        # redis-py) with the messages of the gap lost.
        self._subscriber = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        self._catch_up = catch_up
        self._backoff = backoff
        self._pubsub: Any = None  # the open pub/sub connection; None while there is none
        self._reader: asyncio.Task[None] | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        # When the connection was lost, until the re-read after it has been made.
        self._lost_at: datetime | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self.reconnects = 0  # connections opened again after a loss

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

    async def _listen(self, channel: str) -> None:
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_forever(), name="kiln-pubsub-reader")
        if self._pubsub is not None:
            # Lost meanwhile: the reader subscribes again to every channel listened on.
            with contextlib.suppress(Exception):
                await self._pubsub.subscribe(channel)
        # Otherwise the reader, connecting, subscribes to it with the others.
        try:
            await asyncio.wait_for(confirmed, timeout=self.CONFIRM_TIMEOUT)
        except TimeoutError:
            if self._pubsub is None:  # an outage (UNAVAILABLE to the client), not a bug
                raise RedisConnectionError("the pub/sub connection to Redis is down") from None
            raise
        finally:
            if self._confirmations.get(channel) is confirmed:
                del self._confirmations[channel]

    async def _unlisten(self, channel: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._connect()
                failures = 0
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                await self._lost(error, failures)
                await asyncio.sleep(self._backoff.delay(failures))

    async def _connect(self) -> None:
        """Opens the connection, subscribed to every channel listened on, and once Redis has
        confirmed them, re-reads what was missed if the connection had been lost."""
        pubsub = self._subscriber.pubsub()
        try:
            # A Redis that accepts but does not answer would hold the handshake forever.
            await asyncio.wait_for(pubsub.connect(), self.CONFIRM_TIMEOUT)
            self._pubsub = pubsub
            wanted = list(self._local)
            if wanted:
                await pubsub.subscribe(*wanted)
                await asyncio.wait_for(self._confirm(pubsub, set(wanted)), self.CONFIRM_TIMEOUT)
        except BaseException:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            raise
        if self._lost_at is not None:
            self.reconnects += 1
            log.warning("pub/sub connection is back; re-reading what its subscribers follow")
            self._catching_up = asyncio.create_task(self._catch_up_since(self._lost_at))

    async def _confirm(self, pubsub: Any, waiting: set[str]) -> None:
        """Reads until Redis has confirmed every channel of `waiting` (handling whatever else
        arrives meanwhile)."""
        while waiting:
            raw = await pubsub.get_message(timeout=1.0)
            if raw is not None:
                waiting.discard(self._handle(raw) or "")

    async def _read(self) -> None:
        """Reads until the connection fails (raises)."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            raw = await self._pubsub.get_message(timeout=1.0)
            now = loop.time()
            if raw is not None:
                heard, pinged = now, False
                self._handle(raw)
            elif pinged and now - heard > 2 * self.PING_AFTER:
                raise ConnectionError("Redis does not answer on the pub/sub connection")
            elif not pinged and now - heard > self.PING_AFTER:
                await self._pubsub.ping()
                pinged = True

    def _handle(self, raw: dict[str, Any]) -> str | None:
        """Dispatches a message; returns the channel of a subscription's confirmation."""
        kind = raw["type"]
        if kind == "message":
            self._dispatch(raw["channel"].decode(), orjson.loads(raw["data"]))
        elif kind == "subscribe":
            channel: str = raw["channel"].decode()
            confirmed = self._confirmations.pop(channel, None)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
            return channel
        return None

    async def _lost(self, error: Exception, failures: int) -> None:
        if self._lost_at is None:
            self._lost_at = datetime.now(UTC)
            log.warning("pub/sub connection lost (%s); reconnecting", error)
        elif failures % 10 == 0:
            log.warning("pub/sub connection still down after %d attempts (%s)", failures, error)
        if self._catching_up is not None:
            self._catching_up.cancel()  # the next connection re-reads from the first loss
            self._catching_up = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _catch_up_since(self, lost_at: datetime) -> None:
        """Hands the current state of every followed channel to its subscribers; retried
        (with the backoff) while the database does not answer."""
        if self._catch_up is None:
            self._lost_at = None
            return
        failures = 0
        while True:
            try:
                states = await self._catch_up(tuple(self._local), lost_at)
            except Exception:
                failures += 1
                if failures % 10 == 1:  # the first failure, then every tenth
                    log.exception("re-reading after the pub/sub connection came back failed")
                await asyncio.sleep(self._backoff.delay(failures))
                continue
            for channel, message in states:
                self._dispatch(channel, message)
            self._lost_at = None
            return

    async def close(self) -> None:
        await super().close()
        for task in (self._catching_up, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self._subscriber.aclose()
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
    """The process's hub; on Redis, one that re-reads what its subscribers follow from the
    database when its pub/sub connection comes back."""
    if not redis_url:
        return InProcessHub()
    from realtime.catch_up import current_states  # reads the services, which publish here

    return RedisHub(redis_url, catch_up=current_states)
