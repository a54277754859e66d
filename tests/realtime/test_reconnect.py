"""A process's pub/sub connection to Redis drops and comes back: its subscribers miss no state.

Redis (a private server, tests/support/private_servers.py) is killed while subscribers follow
a generation and their balance through the schema; the generation completes meanwhile (its
messages cannot be published: Redis is gone), and Redis comes back empty on the same port.
The hub reconnects by itself and re-reads what its subscribers follow, so each subscription,
still the same one, gets the final state. The bound is an upper bound on recovery, not a
speed measurement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from realtime.hub import Hub, RedisHub, get_hub, make_hub, set_hub
from schema.build import build_schema
from services import auth, credits, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput
from tests.support.private_servers import PrivateRedis
from tests.support.schema import request_context
from tests.support.sockets import Socket, open_socket, start

RECOVERY = 30.0  # an upper bound on coming back, never a measurement
FIRST = 10.0
WATCH = "subscription W($id: ID!) { generationUpdated(id: $id) { id status version } }"
MINE = "subscription M { myGenerations { id status version } }"
BALANCE = "subscription B { creditBalanceChanged { available reserved version } }"


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture
async def redis_hub(backend, private_redis: PrivateRedis) -> AsyncIterator[Hub]:
    """The hub a production process makes (make_hub), on the private Redis, as this test's
    process hub; the backend's in-process hub is put back afterwards."""
    private_redis.start()  # a previous test may have left it down
    previous = get_hub()
    hub = make_hub(private_redis.url())
    assert isinstance(hub, RedisHub)
    await hub.start()
    set_hub(hub)
    try:
        yield hub
    finally:
        set_hub(previous)
        await hub.close()


class Subscriber:
    """One subscription run through the schema; what it received, in order."""

    def __init__(self, results: AsyncIterator[Any], field: str) -> None:
        self.field = field
        self.received: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self.task = asyncio.create_task(self._run(results))

    async def _run(self, results: AsyncIterator[Any]) -> None:
        async for result in results:
            assert not result.errors, result.errors
            async with self.changed:
                self.received.append(result.data[self.field])
                self.changed.notify_all()

    async def wait_until(self, what: str, check: Any, within: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(within), self.changed:
                await self.changed.wait_for(lambda: any(check(m) for m in self.received))
        except TimeoutError:
            raise AssertionError(
                f"{self.field}: no {what} within {within:.0f} s; received {self.received}"
            ) from None
        return next(m for m in self.received if check(m))


async def subscribe(schema: Any, context: Any, query: str, field: str, **variables: Any):
    results = await schema.subscribe(query, variable_values=variables, context_value=context)
    assert not hasattr(results, "errors"), results
    return Subscriber(results, field)


async def complete_while_redis_is_down(
    private_redis: PrivateRedis, user: Any, generation_id: Any
) -> tuple[Any, credits.Balance]:
    """Kills Redis, completes the generation (its messages cannot be published), brings
    Redis back empty on the same port: the completed row and the balance it left."""
    private_redis.kill()
    output = StoredOutput(0, f"{user.id}/{generation_id}/0.png", "image/png", 1)
    done = await generations.complete(generation_id, [output], "local")
    assert done is not None  # completed in the database; its messages were lost
    after = await credits.get_balance(user.id)
    private_redis.start()
    return done, after


async def live(hub: Hub, count: int) -> None:
    """Until `count` subscriptions are live (myGenerations sends nothing before a change)."""
    async with asyncio.timeout(FIRST):
        while hub.local_subscriptions < count:
            await asyncio.sleep(0.01)


async def test_subscribers_get_the_final_state_after_redis_comes_back(
    backend, make_user, redis_hub: Hub, private_redis: PrivateRedis
):
    user = await make_user(credits=20)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a kiln in the rain"), load_catalogue()
    )
    await generations.start(generation.id)
    schema = build_schema(backend.settings)
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    watch = await subscribe(schema, context, WATCH, "generationUpdated", id=str(generation.id))
    mine = await subscribe(schema, context, MINE, "myGenerations")
    balance = await subscribe(schema, context, BALANCE, "creditBalanceChanged")
    subscribers = (watch, mine, balance)
    try:
        await watch.wait_until("PROCESSING", lambda m: m["status"] == "PROCESSING", FIRST)
        before = await balance.wait_until("balance", lambda m: True, FIRST)
        await live(redis_hub, 3)

        done, after = await complete_while_redis_is_down(private_redis, user, generation.id)
        assert after.version > before["version"]

        final = {"id": str(generation.id), "status": "COMPLETED", "version": done.version}
        await watch.wait_until("final state", lambda m: m == final, RECOVERY)
        await mine.wait_until("final state", lambda m: m == final, RECOVERY)
        await balance.wait_until("new balance", lambda m: m["version"] == after.version, RECOVERY)
        # The same subscriptions, never ended and resubscribed.
        assert not watch.task.done() or watch.task.exception() is None
        assert not mine.task.done() and not balance.task.done()

        # And the hub is live again: a change made now arrives the ordinary way.
        later = await generations.create_generation(
            user, NewGeneration(prompt="after the outage"), load_catalogue()
        )
        await mine.wait_until("the next generation", lambda m: m["id"] == str(later.id), RECOVERY)
    finally:
        for subscriber in subscribers:
            subscriber.task.cancel()
        await asyncio.gather(*(s.task for s in subscribers), return_exceptions=True)


class Frames:
    """What a socket received, per operation id."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.by_operation: dict[str, list[dict[str, Any]]] = {}

    async def until(self, operation: str, what: str, check: Any, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                while not any(check(f) for f in self.by_operation.get(operation, [])):
                    frame = await self.socket.next(within)
                    self.by_operation.setdefault(frame.get("id", ""), []).append(frame)
        except TimeoutError:
            raise AssertionError(
                f"{operation}: no {what} within {within:.0f} s; received {self.by_operation}"
            ) from None


def data(frame: dict[str, Any], field: str) -> dict[str, Any]:
    return frame.get("payload", {}).get("data", {}).get(field) if frame["type"] == "next" else {}


async def test_socket_subscribers_get_the_final_state_after_redis_comes_back(
    backend, make_user, redis_hub: Hub, private_redis: PrivateRedis
):
    """Through the WebSocket transport, which takes subscriptions over from their resolvers
    (resolvers/subscriptions.py, HAND_OFF): the same, on one socket that stays open."""
    user = await make_user(credits=20)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a kiln in the fog"), load_catalogue()
    )
    await generations.start(generation.id)
    handler, socket = await open_socket(backend.settings, user)
    frames = Frames(socket)
    try:
        await start(handler, "watch", WATCH, id=str(generation.id))
        await start(handler, "mine", MINE)
        await start(handler, "balance", BALANCE)
        await frames.until("watch", "PROCESSING", lambda f: f["type"] == "next", FIRST)
        await frames.until("balance", "balance", lambda f: f["type"] == "next", FIRST)
        [before] = [data(f, "creditBalanceChanged") for f in frames.by_operation["balance"]]
        await live(redis_hub, 3)

        done, after = await complete_while_redis_is_down(private_redis, user, generation.id)

        final = {"id": str(generation.id), "status": "COMPLETED", "version": done.version}
        await frames.until(
            "watch", "final state", lambda f: data(f, "generationUpdated") == final, RECOVERY
        )
        await frames.until("watch", "its end", lambda f: f["type"] == "complete", RECOVERY)
        await frames.until(
            "mine", "final state", lambda f: data(f, "myGenerations") == final, RECOVERY
        )
        await frames.until(
            "balance",
            "new balance",
            lambda f: (data(f, "creditBalanceChanged") or {}).get("version") == after.version,
            RECOVERY,
        )
        assert after.version > before["version"]
        assert socket.closed is None
        assert not any(f["type"] == "error" for fs in frames.by_operation.values() for f in fs)
    finally:
        await handler.shutdown()
