"""Putting a Dramatiq message on its queue without blocking the event loop.

Dramatiq's RedisBroker enqueues with a blocking Redis call; from the API that meant a thread
hop per accepted generation (about a seventh of its CPU under load). This does what
`RedisBroker.enqueue` does (same message copy, same middleware hooks, same Lua script and
arguments) over the process's asyncio Redis client, so workers cannot tell the difference.
Other brokers (the embedded stub broker keeps its queues in memory) enqueue directly."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis
from dramatiq import Broker, Message
from dramatiq.brokers import redis as dramatiq_redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


class Enqueuer:
    def __init__(self, broker: Broker, redis: aioredis.Redis | None) -> None:
        self._broker = broker
        self._redis_broker = broker if isinstance(broker, RedisBroker) else None
        self._dispatch = (
            redis.register_script(dramatiq_redis._scripts["dispatch"])
            if redis is not None and self._redis_broker is not None
            else None
        )
        self._redis = redis
        self._max_unpack_size: int | None = None

    def uses(self, redis: aioredis.Redis | None) -> bool:
        return redis is self._redis

    async def enqueue(self, message: Message, delay: int | None = None) -> None:
        staged = await self._prepare(message, delay)
        if staged is None:
            self._broker.enqueue(message, delay=delay)
            return
        await staged.dispatch()

    async def stage(
        self, pipeline: Pipeline, message: Message, delay: int | None = None
    ) -> Staged | None:
        """Adds the enqueue of `message` to `pipeline` (one round trip with whatever else it
        carries); the caller then settles the Staged with its result. None when this broker
        does not enqueue through Redis: enqueue() it instead."""
        staged = await self._prepare(message, delay)
        if staged is not None:
            assert self._dispatch is not None
            pipeline.evalsha(self._dispatch.sha, len(staged.keys), *staged.keys, *staged.args)
        return staged

    async def _prepare(self, message: Message, delay: int | None) -> Staged | None:
        broker = self._redis_broker
        if broker is None or self._dispatch is None:
            return None
        if self._max_unpack_size is None:
            # Asks Redis once per process unless dramatiq_lua_max_stack is set.
            self._max_unpack_size = int(await asyncio.to_thread(broker._max_unpack_size))
        queue_name = message.queue_name
        # A unique id per enqueue, as RedisBroker does: a retried message is a new entry.
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        if delay is not None:
            queue_name = dq_name(queue_name)
            message = message.copy(queue_name=queue_name, options={"eta": current_millis() + delay})
        broker.emit_before("enqueue", message, delay)
        args = [
            "enqueue",
            current_millis(),
            queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            self._max_unpack_size,
            message.options["redis_message_id"],
            message.encode(),
        ]
        return Staged(broker, self._dispatch, [broker.namespace], args, message, delay)


class Staged:
    """An enqueue prepared for Dramatiq's dispatch script: run on its own, or settled with the
    result of the pipeline that carried it."""

    def __init__(
        self,
        broker: RedisBroker,
        script: AsyncScript,
        keys: list[Any],
        args: list[Any],
        message: Message,
        delay: int | None,
    ) -> None:
        self.broker, self.script = broker, script
        self.keys, self.args = keys, args
        self.message, self.delay = message, delay

    async def dispatch(self) -> None:
        await self.script(keys=self.keys, args=self.args)
        self.broker.emit_after("enqueue", self.message, self.delay)

    async def settle(self, result: Any) -> None:
        """A pipeline sends the script by its hash only: on a server that does not know it yet
        (first use, or after a restart) it is sent again on its own, which loads it."""
        if isinstance(result, NoScriptError):
            await self.dispatch()
            return
        if isinstance(result, BaseException):
            raise result
        self.broker.emit_after("enqueue", self.message, self.delay)
