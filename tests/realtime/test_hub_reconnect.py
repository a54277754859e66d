"""The Redis hub's pub/sub connection, lost and back (a private Redis, killed or paused): the
hub reconnects by itself, subscribed again to what its subscribers listen on, and hands them
the re-read of what they follow, of which each gets only what is newer than what it has.
Bounds are upper bounds on recovery, never speed measurements."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from datetime import UTC, datetime

import pytest
import redis.exceptions

from realtime.backoff import Backoff
from realtime.hub import RedisHub
from realtime.mailbox import Mailbox, Message
from tests.support.private_servers import PrivateRedis

RECOVERY = 30.0  # an upper bound on coming back, never a measurement
QUICK = Backoff(first=0.05, cap=0.5)
Publication = tuple[str, Message]


class ReReads:
    """A catch-up that answers what the test says the database holds, and records each call."""

    def __init__(self) -> None:
        self.states: list[Publication] = []
        self.calls: list[tuple[set[str], datetime]] = []
        self.called = asyncio.Event()
        self.failing = 0  # how many calls fail first, as when the database does not answer

    async def __call__(self, names: Collection[str], lost_at: datetime) -> list[Publication]:
        self.calls.append((set(names), lost_at))
        self.called.set()
        if self.failing:
            self.failing -= 1
            raise ConnectionRefusedError("the database does not answer")
        return [(channel, message) for channel, message in self.states if channel in names]


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture
async def hubs(private_redis: PrivateRedis) -> AsyncIterator[tuple[RedisHub, RedisHub, ReReads]]:
    """(subscriber, publisher, the subscriber's catch-up) on the private Redis."""
    private_redis.start()  # a previous test may have left it down
    reads = ReReads()
    subscriber = RedisHub(private_redis.url(), catch_up=reads, backoff=QUICK)
    publisher = RedisHub(private_redis.url())
    try:
        yield subscriber, publisher, reads
    finally:
        private_redis.resume()
        await subscriber.close()
        await publisher.close()


async def next_of(box: Mailbox) -> Message:
    async with asyncio.timeout(RECOVERY):
        return await anext(aiter(box))


async def publish_when_back(publisher: RedisHub, channel: str, message: Message) -> None:
    """Publishes once the publisher's own connection answers again."""
    async with asyncio.timeout(RECOVERY):
        while True:
            try:
                await publisher.publish(channel, message)
                return
            except Exception:
                await asyncio.sleep(0.1)


async def test_reconnects_resubscribes_and_hands_over_only_newer_states(hubs, private_redis):
    subscriber, publisher, reads = hubs
    behind, current = f"kiln:test:{uuid.uuid4()}", f"kiln:test:{uuid.uuid4()}"
    async with subscriber.subscribe(behind) as stale, subscriber.subscribe(current) as fresh:
        stale.sent(behind, 1)
        fresh.sent(current, 2)
        before = datetime.now(UTC)
        private_redis.kill()
        # What the database holds once the connection is back: one changed, one did not.
        reads.states = [(behind, {"version": 2, "n": "changed"}), (current, {"version": 2})]
        private_redis.start()

        assert await next_of(stale) == {"version": 2, "n": "changed"}
        async with asyncio.timeout(RECOVERY):
            await reads.called.wait()
        [(names, lost_at)] = reads.calls
        assert names == {behind, current}
        assert before <= lost_at <= datetime.now(UTC)
        assert subscriber.reconnects == 1

        # Subscribed again in Redis: ordinary messages flow, and `fresh` got nothing before.
        await publish_when_back(publisher, current, {"version": 3})
        assert await next_of(fresh) == {"version": 3}


async def test_a_redis_that_stops_answering_is_left_and_reconnected(hubs, private_redis):
    subscriber, _, reads = hubs
    subscriber.PING_AFTER = 0.2
    subscriber.CONFIRM_TIMEOUT = 1.0
    channel = f"kiln:test:{uuid.uuid4()}"
    async with subscriber.subscribe(channel) as box:
        private_redis.pause()
        # Silent for long enough that the hub's PING goes unanswered.
        async with asyncio.timeout(RECOVERY):
            while subscriber._lost_at is None:
                await asyncio.sleep(0.05)
        reads.states = [(channel, {"version": 5})]
        private_redis.resume()
        assert await next_of(box) == {"version": 5}
        assert subscriber.reconnects == 1


async def test_a_subscriber_arriving_while_redis_is_down_is_subscribed_when_it_is_back(
    hubs, private_redis
):
    subscriber, publisher, _ = hubs
    first, second = f"kiln:test:{uuid.uuid4()}", f"kiln:test:{uuid.uuid4()}"
    async with subscriber.subscribe(first):
        private_redis.kill()
        async with asyncio.timeout(RECOVERY):
            while subscriber._lost_at is None:  # the hub noticed
                await asyncio.sleep(0.05)
        arriving = asyncio.ensure_future(subscriber.attach(second))
        await asyncio.sleep(0)
        assert not arriving.done()
        private_redis.start()
        async with asyncio.timeout(RECOVERY):
            box = await arriving
        try:
            await publish_when_back(publisher, second, {"version": 1})
            assert await next_of(box) == {"version": 1}
        finally:
            await subscriber.detach(box)


async def test_a_subscriber_arriving_while_redis_stays_down_is_refused_as_an_outage(
    hubs, private_redis
):
    subscriber, _, _ = hubs
    subscriber.CONFIRM_TIMEOUT = 0.5
    async with subscriber.subscribe(f"kiln:test:{uuid.uuid4()}"):
        private_redis.kill()
        async with asyncio.timeout(RECOVERY):
            while subscriber._lost_at is None:  # the hub noticed
                await asyncio.sleep(0.05)
        with pytest.raises(redis.exceptions.ConnectionError):
            await subscriber.attach(f"kiln:test:{uuid.uuid4()}")
        assert subscriber.local_subscriptions == 1


async def test_a_re_read_that_fails_is_tried_again(hubs, private_redis):
    subscriber, _, reads = hubs
    channel = f"kiln:test:{uuid.uuid4()}"
    async with subscriber.subscribe(channel) as box:
        private_redis.kill()
        reads.states, reads.failing = [(channel, {"version": 4})], 2
        private_redis.start()
        assert await next_of(box) == {"version": 4}
        assert len(reads.calls) == 3
        assert subscriber.reconnects == 1
