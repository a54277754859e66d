"""A committed change's messages and jobs leave in one Redis round trip: the subscribers get
the messages and the queue gets exactly what Dramatiq's RedisBroker would have put there."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
import redis
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from redis.asyncio.client import Pipeline

import runtime
from realtime import hub as hub_module
from realtime.hub import RedisHub, set_hub
from services import jobs
from tasks import outbox
from tests.support.broker import stored_messages
from tests.support.services import need, redis_url

DB = 12


@pytest.fixture
async def wired(monkeypatch) -> Any:
    """A Redis hub and a Redis broker with a `generation.run` actor, as in production."""
    need("redis")
    namespace = f"kiln-test-outbox-{uuid.uuid4().hex}"
    broker = RedisBroker(url=redis_url(DB), namespace=namespace)
    actor = dramatiq.Actor(
        lambda generation_id: None, broker=broker, actor_name=jobs.RUN, queue_name="default",
        priority=0, options={},
    )  # fmt: skip
    client = aioredis.Redis.from_url(redis_url(DB))
    sync = redis.Redis.from_url(redis_url(DB))
    hub = RedisHub(redis_url(DB))
    await hub.start()
    previous = hub_module._hub
    set_hub(hub)
    monkeypatch.setattr(runtime, "_current", SimpleNamespace(redis=client))
    monkeypatch.setattr(outbox, "ACTORS", {jobs.RUN: actor})
    monkeypatch.setattr(outbox, "_enqueuer", None)
    monkeypatch.setattr(jobs, "_sender", outbox.send_job)  # whatever another test left
    try:
        yield SimpleNamespace(
            hub=hub, client=client, sync=sync, namespace=namespace, broker=broker, actor=actor
        )
    finally:
        set_hub(previous)
        await hub.close()
        for key in sync.scan_iter(f"{namespace}*"):
            sync.delete(key)
        sync.close()
        await client.aclose()
        broker.close()


def executions(monkeypatch) -> list[int]:
    """The size of every pipeline sent meanwhile."""
    sizes: list[int] = []
    execute = Pipeline.execute

    async def counted(self, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(self.command_stack))
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)
    return sizes


def message(n: int) -> dict[str, Any]:
    return {"id": f"m{n}", "version": 1}


async def received(box: Any) -> list[str]:
    """The ids of the messages that arrived."""
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            async for arrived in box:
                seen.append(arrived["id"])
    return seen


async def test_messages_and_jobs_of_a_change_leave_in_one_round_trip(wired, monkeypatch):
    generation_id = str(uuid.uuid4())
    async with wired.hub.subscribe("a", "b") as box:
        await outbox.send_together([("a", message(1)), jobs.Job(jobs.RUN, (generation_id,), False)])
        sizes = executions(monkeypatch)
        batch: list[Any] = [("a", message(2)), jobs.Job(jobs.RUN, ("x",), False), ("b", message(3))]
        await outbox.send_together(batch)
        messages = await received(box)
    # The first batch also taught the server the dispatch script; the second is one trip.
    assert sizes == [3]
    assert messages == ["m1", "m2", "m3"]
    queued = stored_messages(wired.sync, wired.namespace, "default")
    assert [m["args"] for m in queued] == [[generation_id], ["x"]]
    wired.broker.enqueue(wired.actor.message_with_options(args=("x",)))
    assert (
        stored_messages(wired.sync, wired.namespace, "default")[1:] == queued[1:] * 2
    )  # as Dramatiq


async def test_a_server_that_forgot_the_script_still_gets_the_job(wired):
    await outbox.send_together([jobs.Job(jobs.RUN, ("before",), False)])
    await wired.client.script_flush()  # as after a Redis restart
    await outbox.send_together([jobs.Job(jobs.RUN, ("after",), False)])
    assert [m["args"] for m in stored_messages(wired.sync, wired.namespace, "default")] == [
        ["before"],
        ["after"],
    ]


async def test_a_failed_round_trip_sends_everything_on_its_own(wired, monkeypatch):
    async def lost(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("lost")  # the batch's round trip, and only that

    monkeypatch.setattr(Pipeline, "execute", lost)
    async with wired.hub.subscribe("a") as box:
        await outbox.send_together([("a", message(1)), jobs.Job(jobs.RUN, ("g",), False)])
        monkeypatch.undo()
        messages = await received(box)
    # Each went again on its own, without a pipeline.
    assert messages == ["m1"]
    assert [m["args"] for m in stored_messages(wired.sync, wired.namespace, "default")] == [["g"]]


async def test_without_a_redis_hub_items_go_one_by_one(backend, monkeypatch):
    sent: list[Any] = []

    async def sender(actor: str, args: tuple[str, ...], delay: int | None) -> None:
        sent.append((actor, args))

    monkeypatch.setattr(jobs, "_sender", sender)
    monkeypatch.setattr(runtime, "_current", SimpleNamespace(redis=None))
    async with backend.hub.subscribe("a") as box:
        await outbox.send_together([("a", message(1)), jobs.Job(jobs.RUN, ("g",), False)])
        messages = await received(box)
    assert messages == ["m1"]
    assert sent == [(jobs.RUN, ("g",))]
