"""How this process's committed changes leave: a job goes to its actor's queue, and the
messages and jobs of one change go together, in one Redis round trip when both the hub and
the broker are on Redis (services.events batches them; Dramatiq's dispatch script and the
PUBLISHes share one pipeline)."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

import runtime
from realtime.hub import RedisHub, get_hub
from services import events, jobs
from tasks.enqueue import Enqueuer, Staged
from tasks.generation import ACTORS

log = logging.getLogger(__name__)
_enqueuer: Enqueuer | None = None


def _enqueuer_for(actor: Any) -> Enqueuer:
    global _enqueuer
    redis = runtime.current().redis
    if _enqueuer is None or not _enqueuer.uses(redis):
        _enqueuer = Enqueuer(actor.broker, redis)
    return _enqueuer


def _redis() -> aioredis.Redis | None:
    try:
        return runtime.current().redis
    except RuntimeError:  # no runtime started: services used on their own (tests)
        return None


async def send_job(actor: str, args: tuple[str, ...], delay: int | None) -> None:
    target = ACTORS[actor]
    await _enqueuer_for(target).enqueue(target.message_with_options(args=args), delay)


async def send_together(items: list[events.Outgoing]) -> None:
    """One pipeline (no MULTI: each command stands alone) for the batch, in order; a failed
    command is logged and fails none of the others. Elsewhere (embedded mode), one by one."""
    hub, redis = get_hub(), _redis()
    if redis is None or not isinstance(hub, RedisHub):
        await events.send_separately(items)
        return
    try:
        staged, results = await _in_one_pipeline(redis, hub, items)
    except Exception:
        # Nothing is known to have left: each goes again on its own (a message twice is
        # dropped by its version, a job twice does nothing twice).
        log.warning("sending a batch failed; sending it item by item", exc_info=True)
        await events.send_separately(items)
        return
    enqueues = {index for index, _ in staged}
    for index, result in enumerate(results):
        if isinstance(result, BaseException) and index not in enqueues:
            log.error("publish failed: %s", result)
    for index, stage in staged:
        try:
            await stage.settle(results[index])
        except Exception:
            log.exception("enqueueing %s failed", stage.message.actor_name)


async def _in_one_pipeline(
    redis: aioredis.Redis, hub: RedisHub, items: list[events.Outgoing]
) -> tuple[list[tuple[int, Staged]], list[Any]]:
    """The batch's commands and their results; the enqueues as (command index, Staged)."""
    staged: list[tuple[int, Staged]] = []
    async with redis.pipeline(transaction=False) as pipeline:
        for item in items:
            if isinstance(item, tuple):
                pipeline.publish(item[0], hub.encode(item[1]))
                continue
            if not isinstance(item, jobs.Job):
                await item.deliver()
                continue
            target = ACTORS[await jobs.actor_for(item.actor, item.args, item.priority)]
            message = target.message_with_options(args=item.args)
            stage = await _enqueuer_for(target).stage(pipeline, message)
            if stage is None:
                await item.deliver()
            else:
                staged.append((len(pipeline.command_stack) - 1, stage))
        return staged, await pipeline.execute(raise_on_error=False)


# A key that lives only in Redis's memory: missing means Redis started empty since the last
# look (or this is its first use), and every queued message is gone with it.
MEMORY_MARK = "kiln:broker-memory"


async def broker_forgot() -> bool:
    redis = _redis()
    if redis is None:
        return False  # the in-process broker: its messages live and die with this process
    namespace = runtime.current().settings.redis_namespace
    return bool(await redis.set(f"{namespace}:{MEMORY_MARK}", "1", nx=True))


class RedisResends:
    """The sweeper's re-sends of `generation.run` are marked in Redis until a worker takes
    the message: marks and messages are kept and lost together (a Redis restarted empty
    forgets both, and the work is sent again). A mark outlives a message lost otherwise
    (held by a worker that died, until Dramatiq hands it back) by at most MARK_TTL_MS."""

    PREFIX = "kiln:resent:"
    MARK_TTL_MS = 10 * 60 * 1000

    def _key(self, generation_id: str) -> str:
        return f"{runtime.current().settings.redis_namespace}:{self.PREFIX}{generation_id}"

    async def mark(self, generation_ids: list[str]) -> None:
        redis = _redis()
        if redis is None:
            return
        async with redis.pipeline(transaction=False) as pipeline:
            for generation_id in generation_ids:
                pipeline.set(self._key(generation_id), "1", px=self.MARK_TTL_MS)
            await pipeline.execute()

    async def waiting(self, generation_ids: list[str]) -> set[str]:
        redis = _redis()
        if redis is None:
            return set()
        async with redis.pipeline(transaction=False) as pipeline:
            for generation_id in generation_ids:
                pipeline.exists(self._key(generation_id))
            found = await pipeline.execute()
        return {g for g, exists in zip(generation_ids, found, strict=True) if exists}

    async def picked_up(self, generation_id: str) -> None:
        redis = _redis()
        if redis is not None:
            await redis.delete(self._key(generation_id))


jobs.set_sender(send_job)
jobs.set_broker_check(broker_forgot)
jobs.set_resends(RedisResends())
events.set_transport(send_together)
