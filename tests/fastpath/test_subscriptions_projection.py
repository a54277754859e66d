"""Subscription events sent through a projection (fastpath/projection.py) carry exactly what
graphql-core's execution of the same selection gives, in the same order; events it cannot
reproduce go through graphql-core, errors and all; payloads are shared only where they may be.

Each case runs two subscribers on one generation side by side: one the normal way, one that
hands its subscription off (as to the WebSocket transport, fastpath/websocket.py), and
compares what each client would get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import strawberry
from strawberry.extensions import ParserCache, SchemaExtension

from fastpath.projection import (
    ROOT_ONLY_RESOLVE_HOOKS,
    _only_root_middleware,
    compile_projection,
)
from fastpath.websocket import execute_event
from realtime import channels
from realtime.hub import get_hub
from resolvers.subscriptions import HAND_OFF
from schema.build import build_schema
from services import auth, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput
from services.generations.failures import FailureCode
from tests.support.schema import request_context

TIMEOUT = 10.0
FIELDS = (
    "id kind status progress stage model preset provider prompt negativePrompt params cost "
    "attempts version createdAt startedAt completedAt"
)
SELECTIONS = {
    "plain": f"{{ {FIELDS} }}",
    "aliases, fragments, __typename": """{
        __typename
        key: id
        ... on Generation { s: status progress }
        ...Times
        ... { version }
        status
    }""",
    "nested objects and lists": """{
        id status version
        outputs { __typename index url contentType sizeBytes width height text }
        error { __typename code message }
        parent { id status }
        children { id }
    }""",
    "skip and include": """{
        id
        status @skip(if: $skip)
        stage @include(if: $skip)
        version @include(if: $include)
        ... on Generation @skip(if: $include) { progress }
    }""",
}
FRAGMENT = "fragment Times on Generation { createdAt startedAt completedAt }"
PNG = "image/png"


def document(selection: str) -> str:
    """The subscription with `selection`, declaring only the variables and fragment it uses."""
    variables = "$id: ID!"
    if "$skip" in selection:
        variables += ", $skip: Boolean!, $include: Boolean! = true"
    fragment = FRAGMENT if "...Times" in selection else ""
    return (
        f"subscription Watch({variables}) {{ generationUpdated(id: $id) {selection} }}\n{fragment}"
    )


class Watcher:
    """One subscriber; `received` is what its client would parse, in order of arrival."""

    def __init__(self, query: str, variables: dict[str, Any], context: Any, direct: bool):
        self.query, self.variables, self.context, self.direct = query, variables, context, direct
        self.received: list[dict[str, Any]] = []
        self.sent_directly = 0
        self.raw: list[bytes] = []
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def _note(self, payload: dict[str, Any]) -> None:
        async with self.changed:
            self.received.append(payload)
            self.changed.notify_all()

    async def _send(self, payload: bytes) -> None:
        self.sent_directly += 1
        self.raw.append(payload)
        await self._note(json.loads(payload))

    async def _note_result(self, result: Any) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        await self._note(payload)

    async def _run(self, schema: strawberry.Schema) -> None:
        handed: list[Any] = []
        if self.direct:
            HAND_OFF.set(handed.append)
        results = await schema.subscribe(
            self.query, variable_values=self.variables, context_value=self.context
        )
        assert not hasattr(results, "errors"), results
        async for result in results:
            await self._note_result(result)
        for followed in handed:  # as HandOffTransport follows it, once the stream is over
            try:
                await followed.run(self._send, lambda root: self._execute(schema, root))
            finally:
                await followed.close()

    async def _execute(self, schema: strawberry.Schema, root: Any) -> None:
        await self._note_result(
            await execute_event(schema, self.query, self.variables, None, self.context, root)
        )

    def start(self, schema: strawberry.Schema) -> None:
        self.task = asyncio.create_task(self._run(schema))

    async def wait_for(self, count: int) -> None:
        try:
            async with asyncio.timeout(TIMEOUT), self.changed:
                await self.changed.wait_for(lambda: len(self.received) >= count)
        except TimeoutError:
            ended = self.task is not None and self.task.done()
            problem = self.task.exception() if ended and self.task else None
            raise AssertionError(
                f"{'direct' if self.direct else 'normal'} watcher has {self.received}, "
                f"wanted {count}; ended={ended} {problem!r}"
            ) from None


@pytest.fixture
async def pair(backend, make_user) -> AsyncIterator[Callable[..., Any]]:
    watchers: list[Watcher] = []
    schema = build_schema(backend.settings)  # one per process, as the server has

    async def make(selection: str, user=None, generation=None, **variables: Any):
        user = user or await make_user(credits=20)
        generation = generation or await generations.create_generation(
            user, NewGeneration(prompt="a kiln at dusk"), load_catalogue()
        )
        token = auth.issue_token(user, backend.settings)
        made = []
        for direct in (False, True):
            watcher = Watcher(
                document(selection),
                {"id": str(generation.id), **variables},
                request_context(backend.settings, token),
                direct,
            )
            watcher.start(schema)
            await watcher.wait_for(1)  # subscribed, and the current state sent
            watchers.append(watcher)
            made.append(watcher)
        return generation, made[0], made[1]

    try:
        yield make
    finally:
        for watcher in watchers:
            if watcher.task is not None and not watcher.task.done():
                watcher.task.cancel()
        await asyncio.gather(*(w.task for w in watchers if w.task), return_exceptions=True)


async def step(watchers: tuple[Watcher, ...], change: Any) -> None:
    """Makes one change and waits until every watcher has its message (so no mailbox folds
    two changes into one for one watcher and not the other)."""
    counts = [len(w.received) + 1 for w in watchers]
    await change
    for watcher, count in zip(watchers, counts, strict=True):
        await watcher.wait_for(count)


def output(generation, index: int = 0) -> StoredOutput:
    return StoredOutput(index, f"{generation.user_id}/{generation.id}/{index}.png", PNG, 9, 8, 8)


@pytest.mark.parametrize("name", list(SELECTIONS))
async def test_projected_events_equal_executed_ones(pair, name):
    variables = {"skip": False} if "$skip" in SELECTIONS[name] else {}
    generation, normal, direct = await pair(SELECTIONS[name], **variables)
    both = (normal, direct)
    await step(both, generations.start(generation.id))
    await step(both, generations.report_progress(generation.id, 0.5, "halfway"))
    await step(both, generations.complete(generation.id, [output(generation)], "local"))
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(normal.task, direct.task)  # both end after the final state

    assert direct.received == normal.received
    assert [m["data"]["generationUpdated"]["version"] for m in normal.received] == [1, 2, 3, 4]
    # The first message is the state read from the database; every change went directly.
    assert normal.sent_directly == 0 and direct.sent_directly == 3
    final = normal.received[-1]["data"]["generationUpdated"]
    if "outputs" in final:
        assert final["outputs"][0]["url"].startswith("http://kiln.test/media/")


async def test_failed_generation_error_object(pair):
    generation, normal, direct = await pair(SELECTIONS["nested objects and lists"])
    both = (normal, direct)
    await step(both, generations.start(generation.id))
    await step(
        both, generations.fail(generation.id, FailureCode.PROVIDER_ERROR, "The provider said no.")
    )
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(normal.task, direct.task)
    assert direct.received == normal.received
    assert direct.sent_directly == 2
    assert normal.received[-1]["data"]["generationUpdated"]["error"] == {
        "__typename": "GenerationError",
        "code": "PROVIDER_ERROR",
        "message": "The provider said no. Your credits were refunded.",
    }


async def test_event_the_projection_cannot_reproduce_goes_through_graphql(pair):
    """A null where the schema says non-null: graphql-core's error (with its code), not a
    payload the projection made up; the next event is projected again."""
    generation, normal, direct = await pair(SELECTIONS["plain"])
    both = (normal, direct)
    row = await generations.start(generation.id)
    assert row is not None
    await asyncio.gather(normal.wait_for(2), direct.wait_for(2))
    broken = generations.snapshot(row, []) | {"version": row.version + 1, "model": None}
    channel = channels.generation(generation.id)

    await step(both, get_hub().publish(channel, broken))
    later = generations.snapshot(row, []) | {"version": row.version + 2, "stage": "later"}
    await step(both, get_hub().publish(channel, later))

    assert direct.received == normal.received
    broken_result = normal.received[2]
    assert broken_result["data"] is None
    assert broken_result["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert direct.sent_directly == 2  # the start and the later one; not the broken one
    assert normal.received[3]["data"]["generationUpdated"]["stage"] == "later"


async def test_subscribers_of_one_channel_share_the_encoded_payload(pair, make_user):
    """Same selection and state: encoded once. A selection whose resolvers read the context
    (output URLs) is shared only within a connection."""
    user = await make_user(credits=20)
    generation, _, first = await pair(SELECTIONS["plain"], user=user)
    _, _, second = await pair(SELECTIONS["plain"], user=user, generation=generation)
    _, _, third = await pair(
        SELECTIONS["nested objects and lists"], user=user, generation=generation
    )
    _, _, fourth = await pair(
        SELECTIONS["nested objects and lists"], user=user, generation=generation
    )
    await step((first, second, third, fourth), generations.start(generation.id))
    assert first.raw[-1] is second.raw[-1]
    assert third.raw[-1] == fourth.raw[-1] and third.raw[-1] is not fourth.raw[-1]


class EveryField(SchemaExtension):
    def resolve(self, _next, root, info, *args, **kwargs):
        return _next(root, info, *args, **kwargs)


@strawberry.type
class Item:
    name: str


@strawberry.type
class TinyQuery:
    ok: bool = True


_compiled: list[Any] = []


@strawberry.type
class TinySubscription:
    @strawberry.subscription
    async def items(self, info: strawberry.Info) -> AsyncIterator[Item]:
        _compiled.append(compile_projection(info))
        yield Item(name="x")


async def test_extensions_hooking_every_field_disable_projections():
    """A projection skips field-level hooks, so a schema with one it does not know keeps
    every event on graphql-core."""
    for extensions, projected in (([], True), ([EveryField], False)):
        schema = strawberry.Schema(TinyQuery, subscription=TinySubscription, extensions=extensions)
        results = await schema.subscribe("subscription { items { name } }")
        async for result in results:
            assert result.data == {"items": {"name": "x"}}
        assert (_compiled.pop() is not None) is projected


def test_kiln_schema_projects_generation_updates():
    """Kiln's own schema allows projections (no extension hooks field resolution); adding
    such a hook must come with a look at fastpath/projection.py."""
    schema = build_schema()
    assert _only_root_middleware(schema._schema)
    classes: list[Any] = [getattr(e, "func", e) for e in schema.extensions]
    hooks = {cls for cls in classes if cls._implements_resolve()}
    assert hooks <= set(ROOT_ONLY_RESOLVE_HOOKS)


@strawberry.type
class Keyed:
    @strawberry.subscription
    async def item(self, info: strawberry.Info, key: str) -> AsyncIterator[Item]:
        _compiled.append(compile_projection(info))
        yield Item(name=key)


async def test_subscribers_differing_only_in_arguments_share_one_projection():
    """10,000 subscribers to 10,000 generations hold one compiled selection, not 10,000; a
    directive reading a variable keys the projection on the variables again."""
    # Documents are parsed once, as in Kiln's schema (compiled selections key on their nodes).
    schema = strawberry.Schema(TinyQuery, subscription=Keyed, extensions=[ParserCache])
    plain = "subscription($k: String!) { item(key: $k) { name } }"
    directed = (
        "subscription($k: String!, $on: Boolean!) { item(key: $k) { name @include(if: $on) } }"
    )
    for document, variables in ((plain, {}), (directed, {"on": True})):
        for key in ("a", "b"):
            results = await schema.subscribe(document, variable_values={"k": key, **variables})
            async for result in results:
                assert result.data == {"item": {"name": key}}
        second, first = _compiled.pop(), _compiled.pop()
        assert first is not None and second is not None
        assert (first is second) is (document is plain)
