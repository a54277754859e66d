"""Requests leave no reference cycles behind. An object in a cycle outlives its request until
the garbage collector's next full collection, and the API freezes start-up objects and runs
full collections rarely (server.py) on the belief that request objects die young: ~50 objects
a request in cycles (graphql-core's executor holding its own bound methods, a closure calling
itself) made a full collection under sustained reads free a million objects in a 1.5 s pause
(issue 17, item 8).

Each test runs requests of one kind through the real ASGI app with the collector off, then
counts what one collection finds unreachable: a count, not a timing."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.documents import CREATE, PAGE, WATCH
from services import auth, generations
from tests.support.app import kiln_app
from tests.support.asgi import Socket, post_json
from tests.support.generations import create

REQUESTS = 20
ONE = "query One($id: ID!) { generation(id: $id) { id status prompt } }"


@dataclass
class Garbage:
    """What one collection found unreachable: how many objects, and of which types."""

    count: int = 0
    types: Counter[str] = field(default_factory=Counter)

    def per(self, requests: int) -> float:
        return self.count / requests

    def __str__(self) -> str:
        return f"{self.count} objects in cycles: {self.types.most_common(40)}"


@contextmanager
def collector_off() -> Iterator[Garbage]:
    """Yields what a collection finds, on exit, unreachable among the objects made inside the
    block (the garbage of reference cycles), kept aside to be named."""
    found = Garbage()
    gc.collect()
    # Everything older is held meanwhile, so that nothing an earlier test left (a task still
    # finishing its cancellation, say) becomes garbage in the block and is counted.
    older = gc.get_objects()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
    finally:
        found.count = gc.collect()
        found.types.update(type(o).__qualname__ for o in gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()
        del older


async def garbage_of(request: Callable[[], Awaitable[None]]) -> Garbage:
    for _ in range(3):  # first sight of a document: parsed, validated and cached once
        await request()
    with collector_off() as found:
        for _ in range(REQUESTS):
            await request()
    return found


async def watch(socket: Socket, headers: dict[str, str], generation_id: object) -> None:
    """Opens the connection with the caller's credentials and subscribes (id "1") to the
    generation's updates, up to the first message: its current state."""
    await socket.send({"type": "connection_init", "payload": headers})
    assert (await socket.receive())["type"] == "connection_ack"
    payload = {"query": WATCH, "variables": {"id": str(generation_id)}}
    await socket.send({"id": "1", "type": "subscribe", "payload": payload})
    assert (await socket.receive())["type"] == "next"


@pytest.fixture
async def caller(backend, make_user) -> tuple[Any, dict[str, str]]:
    user = await make_user(credits=1000)
    return user, {"authorization": f"Bearer {auth.issue_token(user, backend.settings)}"}


@pytest.mark.parametrize("kind", ["page", "by id", "create"])
async def test_queries_and_mutations_leave_no_cycles(backend, monkeypatch, caller, kind):
    user, headers = caller
    generation = await create(user)
    body = {
        "page": {"query": PAGE},
        "by id": {"query": ONE, "variables": {"id": str(generation.id)}},
        "create": {"query": CREATE, "variables": {"input": {"prompt": "a kiln"}}},
    }[kind]
    app = kiln_app(backend, monkeypatch)

    async def request() -> None:
        status, answer = await post_json(app, "/graphql", body, headers)
        assert status == 200 and "errors" not in answer, answer

    garbage = await garbage_of(request)
    assert garbage.per(REQUESTS) < 1, str(garbage)


async def test_subscription_messages_leave_no_cycles(backend, monkeypatch, caller):
    user, headers = caller
    generation = await create(user)
    app = kiln_app(backend, monkeypatch)
    async with Socket(app) as socket:
        await watch(socket, headers, generation.id)
        await generations.start(generation.id)
        await socket.receive()
        progress = iter(range(1, 100))

        async def message() -> None:
            step = next(progress)
            await generations.report_progress(generation.id, step / 100, f"step {step}")
            sent = await socket.receive()
            assert sent["payload"]["data"]["generationUpdated"]["stage"] == f"step {step}"

        garbage = await garbage_of(message)
        assert garbage.per(REQUESTS) < 1, str(garbage)


async def test_subscriptions_opened_and_closed_leave_no_cycles(backend, monkeypatch, caller):
    user, headers = caller
    generation = await create(user)
    app = kiln_app(backend, monkeypatch)

    async def subscription() -> None:
        async with Socket(app) as socket:
            await watch(socket, headers, generation.id)
            await socket.send({"id": "1", "type": "complete"})

    garbage = await garbage_of(subscription)
    assert garbage.per(REQUESTS) < 1, str(garbage)
