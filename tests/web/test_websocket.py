"""The WebSocket transport (web/websocket.py) with Kiln's schema: a subscription whose
resolver handed the rest of it over (resolvers/subscriptions.py, HAND_OFF) keeps delivering
every change in order and its final state, while holding none of Strawberry's stream,
graphql-core's executor or the resolver's generator; events the projection cannot reproduce
still go through graphql-core, errors with their code; leaving cleans up.

The handler is driven message by message over a socket stand-in that records what it sends."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from observability import metrics
from realtime import channels
from realtime.hub import get_hub
from schema.build import build_schema
from services import credits, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration
from tests.support.sockets import Socket, open_socket
from web.websocket import LimitedTransportWS

TIMEOUT = 10.0
FIELDS = "id status stage version"
WATCH = f"subscription W($id: ID!) {{ generationUpdated(id: $id) {{ {FIELDS} }} }}"
WATCH_MODEL = WATCH.replace("version", "version model")
MINE = f"subscription M {{ myGenerations {{ {FIELDS} }} }}"
BALANCE = "subscription B { creditBalanceChanged { available reserved total version } }"
# Frames of the machinery a handed-over subscription must no longer keep alive.
RELEASED = {
    "_stream",  # Strawberry's stream (extensions, execution context)
    "map_async_iterable",  # graphql-core's subscription (its executor)
    "generation_updated",
    "my_generations",
    "credit_balance_changed",
}


@pytest.fixture
def fast_path() -> bool:
    """The hand-off is the fast path's: these tests run it on, unless they say otherwise."""
    return True


@pytest.fixture
async def connect(backend) -> AsyncIterator[Callable[..., Any]]:
    schema = build_schema(backend.settings)
    handlers: list[LimitedTransportWS] = []

    async def make(user: Any) -> tuple[LimitedTransportWS, Socket]:
        handler, socket = await open_socket(backend.settings, user, schema)
        handlers.append(handler)
        return handler, socket

    try:
        yield make
    finally:
        for handler in handlers:
            await handler.shutdown()


async def subscribe(
    handler: LimitedTransportWS, query: str, variables: dict[str, Any] | None = None
) -> None:
    payload = {"query": query, "variables": variables or {}}
    message: Any = {"id": "1", "type": "subscribe", "payload": payload}
    await handler.handle_message(message)


async def idle(handler: LimitedTransportWS) -> asyncio.Task[None]:
    """The operation's task once it waits for the next change."""
    task = handler.operations["1"].task
    assert task is not None
    names: set[str] = set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        names = frames_of(task)
        if "__aiter__" in names:  # waiting on a mailbox
            return task
    raise AssertionError(f"the subscription never waited on its mailbox: {names}")


def frames_of(task: asyncio.Task[None]) -> set[str]:
    """The names of every coroutine and generator the task is suspended in, outermost first;
    async generators awaited through anext() are found behind their asend objects."""
    names: set[str] = set()
    current: Any = task.get_coro()
    while current is not None:
        code = next(
            (getattr(current, a) for a in ("cr_code", "ag_code", "gi_code") if hasattr(current, a)),
            None,
        )
        if code is not None:
            names.add(code.co_name)
            awaited = (
                getattr(current, "cr_await", None)
                or getattr(current, "ag_await", None)
                or getattr(current, "gi_yieldfrom", None)
            )
        else:  # an async_generator_asend (or a future): what it drives is among its referents
            awaited = next(
                (
                    r
                    for r in gc.get_referents(current)
                    if inspect.iscoroutine(r) or inspect.isasyncgen(r) or inspect.isgenerator(r)
                ),
                None,
            )
        current = awaited
    return names


def updated(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "next", message
    node: dict[str, Any] = message["payload"]["data"]["generationUpdated"]
    return node


@pytest.mark.parametrize("fast_path", [True, False], ids=["handed-over", "fast-path-off"])
async def test_handed_over_subscription_delivers_every_change_holding_no_executor(
    connect, make_user, fast_path
):
    """With FAST_PATH_ENABLED off nothing is handed over: the resolver's stream sends the
    same messages, in order, and the final `complete`."""
    user = await make_user(credits=20)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a kiln at dusk"), load_catalogue()
    )
    handler, socket = await connect(user)
    live_before = metrics.ACTIVE_SUBSCRIPTIONS._value.get()
    await subscribe(handler, WATCH, {"id": str(generation.id)})
    assert updated(await socket.next())["status"] == "QUEUED"

    task = await idle(handler)
    if fast_path:
        assert not frames_of(task) & RELEASED
        # Counted by the transport (Strawberry's stream is over; the schema's extension
        # counts those it runs).
        assert metrics.ACTIVE_SUBSCRIPTIONS._value.get() == live_before + 1
    else:
        assert {"_stream", "generation_updated"} <= frames_of(task)

    await generations.start(generation.id)
    await generations.report_progress(generation.id, 0.5, "halfway")
    first, second = updated(await socket.next()), updated(await socket.next())
    assert (first["status"], second["stage"]) == ("PROCESSING", "halfway")
    await generations.complete(generation.id, [], "local")
    final = updated(await socket.next())
    assert final["status"] == "COMPLETED"
    assert [first["version"], second["version"], final["version"]] == [2, 3, 4]
    assert (await socket.next()) == {"id": "1", "type": "complete"}
    async with asyncio.timeout(TIMEOUT):
        await task
    assert get_hub().local_subscriptions == 0
    assert metrics.ACTIVE_SUBSCRIPTIONS._value.get() == live_before


async def test_event_the_projection_cannot_reproduce_still_goes_through_graphql(connect, make_user):
    """A null where the schema says non-null: graphql-core's error with its code, as the
    stream would send it; the next change is delivered as usual."""
    user = await make_user(credits=20)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a kiln at dusk"), load_catalogue()
    )
    handler, socket = await connect(user)
    await subscribe(handler, WATCH_MODEL, {"id": str(generation.id)})
    await socket.next()
    await idle(handler)
    row = await generations.start(generation.id)
    assert row is not None
    assert updated(await socket.next())["status"] == "PROCESSING"
    channel = channels.generation(generation.id)
    broken = generations.snapshot(row, []) | {"version": row.version + 1, "model": None}
    await get_hub().publish(channel, broken)
    error = await socket.next()
    assert error["type"] == "next" and error["payload"]["data"] is None
    assert error["payload"]["errors"][0]["extensions"]["code"] == "INTERNAL"
    later = generations.snapshot(row, []) | {"version": row.version + 2, "stage": "later"}
    await get_hub().publish(channel, later)
    assert updated(await socket.next())["stage"] == "later"


async def test_completing_a_handed_over_subscription_leaves_its_channel(connect, make_user):
    user = await make_user(credits=20)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a kiln at dusk"), load_catalogue()
    )
    handler, socket = await connect(user)
    await subscribe(handler, WATCH, {"id": str(generation.id)})
    await socket.next()
    task = await idle(handler)
    assert get_hub().local_subscriptions == 1
    complete: Any = {"id": "1", "type": "complete"}
    await handler.handle_message(complete)
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(task, return_exceptions=True)
    assert get_hub().local_subscriptions == 0
    assert "1" not in handler.operations


async def test_my_generations_handed_over_keeps_versions_per_generation(connect, make_user):
    user = await make_user(credits=20)
    handler, socket = await connect(user)
    await subscribe(handler, MINE)
    task = await idle(handler)
    assert not frames_of(task) & RELEASED
    catalogue = load_catalogue()
    first = await generations.create_generation(user, NewGeneration(prompt="one"), catalogue)
    second = await generations.create_generation(user, NewGeneration(prompt="two"), catalogue)
    await generations.start(first.id)
    got: list[dict[str, Any]] = []
    while len(got) < 3:
        message = await socket.next()
        assert message["type"] == "next", message
        got.append(message["payload"]["data"]["myGenerations"])
    assert [(g["id"], g["version"]) for g in got] == [
        (str(first.id), 1),
        (str(second.id), 1),
        (str(first.id), 2),
    ]
    # An older version of one generation is dropped, whatever the others' versions are.
    stale = generations.snapshot(await generations.get_visible(user, first.id), [])
    await get_hub().publish(channels.user_generations(user.id), stale | {"version": 1})
    await generations.start(second.id)
    message = await socket.next()
    assert message["payload"]["data"]["myGenerations"]["id"] == str(second.id)


async def test_credit_balance_handed_over_sends_what_execution_would(connect, make_user):
    user = await make_user(credits=20)
    handler, socket = await connect(user)
    await subscribe(handler, BALANCE)
    start = (await socket.next())["payload"]["data"]["creditBalanceChanged"]
    task = await idle(handler)
    assert not frames_of(task) & RELEASED
    await generations.create_generation(user, NewGeneration(prompt="x"), load_catalogue())
    message = await socket.next()
    balance = await credits.get_balance(user.id)
    assert message["payload"] == {
        "data": {
            "creditBalanceChanged": {
                "available": balance.available,
                "reserved": balance.reserved,
                "total": balance.available + balance.reserved,
                "version": balance.version,
            }
        }
    }
    assert balance.version > start["version"]
