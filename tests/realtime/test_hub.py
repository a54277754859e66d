"""The pub/sub hubs. Behaviours common to both run against an InProcessHub (publisher and
subscriber are one hub) and against two RedisHubs (one publishes, another subscribes: the
fan-out between processes). Redis-only behaviours follow."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from realtime import channels
from realtime.hub import Hub, InProcessHub, RedisHub
from realtime.mailbox import Mailbox
from tests.support.services import need

TIMEOUT = 5.0


async def receive(it, n: int = 1) -> list[dict]:
    async with asyncio.timeout(TIMEOUT):
        return [await anext(it) for _ in range(n)]


async def rest_of(box: Mailbox) -> list[dict]:
    """What a closed mailbox still yields before its iteration ends."""
    async with asyncio.timeout(TIMEOUT):
        return [m async for m in box]


def gen_message(version: int = 1, id_: str | None = None, **extra) -> dict:
    return {"id": id_ or str(uuid.uuid4()), "version": version, "status": "QUEUED", **extra}


@dataclass
class Pair:
    publisher: Hub
    subscriber: Hub


@pytest.fixture(params=["in-process", "redis"])
async def pair(request, hub_url) -> AsyncIterator[Pair]:
    if request.param == "in-process":
        hub = InProcessHub()
        try:
            yield Pair(hub, hub)
        finally:
            await hub.close()
    else:
        need("redis")
        publisher, subscriber = RedisHub(hub_url), RedisHub(hub_url)
        try:
            yield Pair(publisher, subscriber)
        finally:
            await subscriber.close()
            await publisher.close()


@pytest.fixture
def channel(channel_prefix) -> Callable[[str], str]:
    return lambda name: f"{channel_prefix}:{name}"


# ---- common behaviours --------------------------------------------------------------------


async def test_subscribe_then_publish_delivers(pair, channel):
    ch = channel("one")
    message = gen_message(3, progress=0.5, stage="rendering")
    async with pair.subscriber.subscribe(ch) as box:
        assert box.channels == (ch,)
        await pair.publisher.publish(ch, message)
        assert await receive(aiter(box)) == [message]


async def test_several_subscribers_of_one_channel_all_receive(pair, channel):
    ch = channel("shared")
    message = gen_message()
    async with AsyncExitStack() as stack:
        boxes = [await stack.enter_async_context(pair.subscriber.subscribe(ch)) for _ in range(3)]
        assert pair.subscriber.local_subscriptions == 3
        await pair.publisher.publish(ch, message)
        for box in boxes:
            assert await receive(aiter(box)) == [message]


async def test_subscriber_to_two_channels_gets_both(pair, channel):
    first, second = channel("gen"), channel("user")
    m1, m2 = gen_message(), gen_message()
    async with pair.subscriber.subscribe(first, second) as box:
        assert pair.subscriber.local_subscriptions == 2
        await pair.publisher.publish(first, m1)
        await pair.publisher.publish(second, m2)
        got = await receive(aiter(box), 2)
    assert sorted(got, key=lambda m: m["id"]) == sorted([m1, m2], key=lambda m: m["id"])


async def test_subscriber_does_not_get_other_channels(pair, channel):
    mine, other = channel("mine"), channel("other")
    unwanted, wanted = gen_message(), gen_message()
    async with pair.subscriber.subscribe(mine) as box:
        # Same publisher, in order: were `unwanted` delivered, it would come out first.
        await pair.publisher.publish(other, unwanted)
        await pair.publisher.publish(mine, wanted)
        assert await receive(aiter(box)) == [wanted]


async def test_leaving_the_context_stops_delivery_and_cleans_up(pair, channel):
    ch = channel("leave")
    hub = pair.subscriber
    async with hub.subscribe(ch) as staying:
        async with hub.subscribe(ch) as leaving:
            assert hub.local_subscriptions == 2
        assert hub.local_subscriptions == 1
        late = gen_message()
        await pair.publisher.publish(ch, late)
        # Once the one that stayed has it, the hub has dispatched it to every local box.
        assert await receive(aiter(staying)) == [late]
        assert await rest_of(leaving) == []
    assert hub.local_subscriptions == 0
    assert await rest_of(staying) == []


async def test_subscribe_again_after_everyone_left(pair, channel):
    ch = channel("again")
    async with pair.subscriber.subscribe(ch) as box:
        await pair.publisher.publish(ch, first := gen_message())
        assert await receive(aiter(box)) == [first]
    assert pair.subscriber.local_subscriptions == 0
    async with pair.subscriber.subscribe(ch) as box:
        await pair.publisher.publish(ch, second := gen_message())
        assert await receive(aiter(box)) == [second]


async def test_exception_inside_the_context_still_cleans_up(pair, channel):
    ch = channel("boom")
    with pytest.raises(RuntimeError):
        async with pair.subscriber.subscribe(ch):
            raise RuntimeError("client went away")
    assert pair.subscriber.local_subscriptions == 0


async def test_hub_close_ends_idle_subscribers(pair, channel):
    hub = pair.subscriber
    finished = []
    entered = asyncio.Event()

    async def consume():
        async with hub.subscribe(channel("idle")) as box:
            entered.set()
            async for message in box:
                finished.append(message)
        finished.append("ended")

    task = asyncio.create_task(consume())
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    assert hub.local_subscriptions == 1
    await hub.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert finished == ["ended"]
    assert hub.local_subscriptions == 0


async def test_hub_close_delivers_pending_messages_then_ends_subscribers():
    hub = InProcessHub()
    ch = channels.generation(uuid.uuid4())
    message = gen_message()
    try:
        async with hub.subscribe(ch) as box:
            await hub.publish(ch, message)
            await hub.close()
            async with asyncio.timeout(2):
                received = [m async for m in box]
            assert received == [message]
    finally:
        await hub.close()


def test_channel_names():
    gid, uid = uuid.uuid4(), uuid.uuid4()
    assert channels.generation(gid) == f"kiln:generation:{gid}"
    assert channels.user_generations(uid) == f"kiln:user:{uid}:generations"
    assert channels.user_credits(uid) == f"kiln:user:{uid}:credits"
    assert len({channels.generation(gid), channels.user_generations(gid)}) == 2


# ---- Redis only ----------------------------------------------------------------------------


async def numsub(admin: aioredis.Redis, *chs: str) -> dict[str, int]:
    return {str(name): count for name, count in await admin.pubsub_numsub(*chs)}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, attempts: int = 250) -> None:
    """Poll an async predicate until it holds (about 20 ms apart); a bounded wait so a
    hang fails, not a timing assertion."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"gave up waiting until: {what}")


async def test_redis_fan_out_to_every_subscriber_of_every_hub(make_redis_hub, channel):
    publisher, hub_a, hub_b = make_redis_hub(), make_redis_hub(), make_redis_hub()
    ch = channel("fanout")
    message = gen_message(7)
    async with AsyncExitStack() as stack:
        boxes = [
            await stack.enter_async_context(hub.subscribe(ch))
            for hub in (hub_a, hub_a, hub_b, hub_b)
        ]
        await publisher.publish(ch, message)
        for box in boxes:
            assert await receive(aiter(box)) == [message]


async def test_redis_subscribe_returns_once_subscription_is_confirmed(
    make_redis_hub, redis_admin, channel
):
    publisher, subscriber = make_redis_hub(), make_redis_hub()
    for i in range(20):
        ch = channel(f"confirm-{i}")
        async with subscriber.subscribe(ch) as box:
            assert await numsub(redis_admin, ch) == {ch: 1}
            await publisher.publish(ch, message := gen_message(i + 1))
            assert await receive(aiter(box)) == [message]


async def test_redis_one_pubsub_connection_for_200_subscribers(
    make_redis_hub, redis_admin, client_name, channel
):
    hub = make_redis_hub()
    names = [channel(f"many-{i}") for i in range(200)]
    async with AsyncExitStack() as stack:
        boxes = [await stack.enter_async_context(hub.subscribe(ch)) for ch in names]
        assert hub.local_subscriptions == 200

        clients = [c for c in await redis_admin.client_list() if c.get("name") == client_name]
        pubsub = [c for c in clients if int(c.get("sub", 0)) > 0 or "P" in c.get("flags", "")]
        assert len(pubsub) == 1, pubsub
        assert int(pubsub[0]["sub"]) == 200
        assert await numsub(redis_admin, *names) == dict.fromkeys(names, 1)

        # and every one of them is live through that one connection
        publisher = make_redis_hub()
        for i, ch in enumerate(names[::37]):
            await publisher.publish(ch, message := gen_message(i + 1))
            assert await receive(aiter(boxes[names.index(ch)])) == [message]

    assert hub.local_subscriptions == 0

    async def all_gone():
        return await redis_admin.pubsub_channels(f"{names[0].rsplit(':', 1)[0]}:*") == []

    await eventually(all_gone, "Redis unsubscribed every channel")


async def test_redis_leaving_the_context_unsubscribes_in_redis(
    make_redis_hub, redis_admin, channel
):
    hub = make_redis_hub()
    ch = channel("unsub")
    async with hub.subscribe(ch):
        async with hub.subscribe(ch):
            assert await redis_admin.pubsub_channels(ch) == [ch]
            assert await numsub(redis_admin, ch) == {ch: 1}
        # one local subscriber left: the Redis subscription stays
        assert await numsub(redis_admin, ch) == {ch: 1}

    async def unsubscribed():
        return await redis_admin.pubsub_channels(ch) == []

    await eventually(unsubscribed, "PUBSUB CHANNELS no longer lists the channel")
    assert await numsub(redis_admin, ch) == {ch: 0}


async def test_redis_publisher_only_hub_opens_no_subscription(
    make_redis_hub, redis_admin, client_name, channel
):
    publisher = make_redis_hub()
    await publisher.publish(channel("nobody"), gen_message())
    await publisher.ping()
    clients = [c for c in await redis_admin.client_list() if c.get("name") == client_name]
    assert all(int(c.get("sub", 0)) == 0 for c in clients)


class GatedRedisHub(RedisHub):
    """A RedisHub whose backend SUBSCRIBE waits for a gate: it stands in for a slow first
    round trip to Redis (latency, a busy server)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = asyncio.Event()
        self.listening = asyncio.Event()

    async def _listen(self, channel: str) -> None:
        self.listening.set()
        await self.gate.wait()
        await super()._listen(channel)


async def test_redis_second_subscriber_also_waits_for_confirmation(make_redis_hub, channel):
    hub = make_redis_hub(GatedRedisHub)
    publisher = make_redis_hub()
    ch = channel("race")
    release_first = asyncio.Event()

    async def first_subscriber():
        async with hub.subscribe(ch):
            await release_first.wait()

    first = asyncio.create_task(first_subscriber())
    try:
        await asyncio.wait_for(hub.listening.wait(), TIMEOUT)
        second = hub.subscribe(ch)
        enter = asyncio.ensure_future(second.__aenter__())
        await asyncio.sleep(0.05)
        if not enter.done():
            # Correct behaviour: the second subscriber waits for the live subscription.
            hub.gate.set()
        box = await asyncio.wait_for(enter, TIMEOUT)
        try:
            await publisher.publish(ch, message := gen_message())
            assert await receive(aiter(box)) == [message]
        finally:
            hub.gate.set()
            await second.__aexit__(None, None, None)
    finally:
        hub.gate.set()
        release_first.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(first, TIMEOUT)


async def test_redis_subscription_recovers_after_the_pubsub_connection_is_killed(
    make_redis_hub, redis_admin, client_name, channel
):
    hub, publisher = make_redis_hub(), make_redis_hub()
    ch = channel("killed")
    async with hub.subscribe(ch) as box:
        it = aiter(box)
        await publisher.publish(ch, before := gen_message(1, id_="g"))
        assert await receive(it) == [before]

        clients = await redis_admin.client_list()
        [pubsub] = [c for c in clients if c.get("name") == client_name and int(c["sub"]) > 0]
        await redis_admin.client_kill_filter(_id=pubsub["id"])
        assert await numsub(redis_admin, ch) == {ch: 0}

        async def resubscribed():
            return await numsub(redis_admin, ch) == {ch: 1}

        await eventually(resubscribed, "the hub subscribed again", attempts=750)
        await publisher.publish(ch, after := gen_message(2, id_="g"))
        assert await receive(it) == [after]


async def test_publish_many_delivers_every_message_in_order(pair, channel):
    """One Redis round trip for the messages of one change (the default: one by one)."""
    first, second = channel("gen"), channel("user")
    messages = [gen_message(1), gen_message(2), gen_message(3)]
    async with pair.subscriber.subscribe(first, second) as box:
        await pair.publisher.publish_many(
            [(first, messages[0]), (second, messages[1]), (first, messages[2])]
        )
        assert await receive(aiter(box), 3) == messages


async def test_redis_concurrent_first_subscriptions_share_one_connection(
    make_redis_hub, redis_admin, client_name, channel
):
    """A process's first subscriptions can all arrive at once (clients reconnecting after a
    deploy): they must share one pub/sub connection, whose reader confirms every one."""
    hub = make_redis_hub()
    names = [channel(f"together-{i}") for i in range(50)]
    boxes = await asyncio.wait_for(asyncio.gather(*(hub.attach(ch) for ch in names)), 15)
    try:
        clients = [c for c in await redis_admin.client_list() if c.get("name") == client_name]
        pubsub = [c for c in clients if int(c.get("sub", 0)) > 0]
        assert [int(c["sub"]) for c in pubsub] == [50]
        publisher = make_redis_hub()
        await publisher.publish(names[-1], message := gen_message(1))
        assert await receive(aiter(boxes[-1])) == [message]
    finally:
        for box in boxes:
            await hub.detach(box)
