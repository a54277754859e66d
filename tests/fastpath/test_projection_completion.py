"""The projection's completion machinery (fastpath/projection.py): coroutines run up to their
first wait without a task, and leaves are serialised exactly as their GraphQL types do."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from graphql import GraphQLBoolean, GraphQLFloat, GraphQLID, GraphQLInt, GraphQLString
from graphql.pyutils import Undefined

from fastpath.projection import Resumed, Unsupported, _scalar, start
from models.generation import GenerationStatus
from schema.build import build_schema


async def test_a_coroutine_that_never_waits_is_finished_by_start() -> None:
    async def plain() -> int:
        return 7

    assert start(plain()) == (True, 7)


async def test_the_rest_of_a_coroutine_that_waits_is_finished_by_awaiting_it() -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[int] = loop.create_future()
    steps: list[str] = []

    async def waits() -> int:
        steps.append("started")
        value = await first
        steps.append("woken")
        await asyncio.sleep(0)  # a bare yield to the loop, relayed too
        return value * 2

    done, rest = start(waits())
    assert not done and isinstance(rest, Resumed) and steps == ["started"]
    loop.call_soon(first.set_result, 21)
    assert await rest == 42
    assert steps == ["started", "woken"]


async def test_cancelling_the_awaiting_task_reaches_the_started_coroutine() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def waits() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    done, rest = start(waits())
    assert not done and isinstance(rest, Resumed)

    async def awaiting() -> Any:
        return await rest

    task = asyncio.ensure_future(awaiting())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_an_error_after_the_first_wait_reaches_the_awaiter() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    done, rest = start(fails())
    assert not done and isinstance(rest, Resumed)
    with pytest.raises(ValueError, match="late"):
        await rest


def _same_as_serialize(output: Any, values: list[Any]) -> None:
    fast = _scalar("field", output)
    for value in values:
        try:
            expected = output.serialize(value)
        except Exception:
            expected = Undefined
        if expected is Undefined or expected is None:
            with pytest.raises(Unsupported):
                fast(value)
        else:
            got = fast(value)
            assert got == expected and type(got) is type(expected), (output, value)


class Named(str):
    pass


def test_builtin_leaves_serialise_as_graphql_core_does() -> None:
    _same_as_serialize(
        GraphQLString, ["a", Named("b"), GenerationStatus.QUEUED, 5, True, 1.5, [], uuid.uuid4()]
    )
    _same_as_serialize(GraphQLID, ["a", Named("b"), 5, 1.0, True, uuid.uuid4(), None, []])
    _same_as_serialize(
        GraphQLInt, [0, -5, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, True, 3.0, 3.5, "4", "x"]
    )
    _same_as_serialize(GraphQLFloat, [1.5, 2, True, math.nan, math.inf, "2.5", "x", -0.0])
    _same_as_serialize(GraphQLBoolean, [True, False, 0, 1, 2.0, "true", None])


def test_schema_leaves_serialise_as_strawberry_does() -> None:
    graphql_schema = build_schema()._schema
    status = graphql_schema.get_type("GenerationStatus")
    _same_as_serialize(status, [*GenerationStatus, "QUEUED", "nope", 3])
    when = datetime(2026, 11, 30, 16, 9, 4, 123456, tzinfo=UTC)
    date_time = graphql_schema.get_type("DateTime")
    _same_as_serialize(date_time, [when, when.replace(tzinfo=None), date(2026, 1, 2), time(3, 4)])
