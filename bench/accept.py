"""Accept: `createGeneration` over HTTP with the workers paused (API only), against the same
transaction and enqueue issued directly with asyncpg and redis from one process."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from dramatiq.brokers import redis as dramatiq_redis

from bench.common import (
    REDIS_URL,
    LoadResult,
    Options,
    Row,
    User,
    closed_loop,
    gql,
    http_client,
    load_rows,
    open_loop,
    pg_dsn,
    register_users,
)
from bench.stack import kiln

CREATE = """
mutation Create($input: CreateGenerationInput!) {
  createGeneration(input: $input) { id status cost version }
}
"""
INPUT = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64}
MODEL = "pattern-v1"  # what the API picks by default (checked against the first row)
RAW_QUEUE = "bench-raw-accept"
RAW_POOL = 16

INSERT_GENERATION = """
INSERT INTO generations (id, kind, status, progress, stage, model, preset, provider, prompt,
  negative_prompt, params, cost, hold, attempts, error_code, error_message, version, request_id,
  idempotency_key, request_hash, created_at, queued_at, started_at, completed_at, parent_id,
  user_id, provider_job, provider_job_id, cache_key)
VALUES ($1, 'IMAGE', 'QUEUED', 0, 'queued', $2, NULL, NULL, $3, NULL, $4, $5, 'HELD', 0, NULL,
  NULL, 1, $6, NULL, NULL, $7, $7, NULL, NULL, NULL, $8, NULL, NULL, NULL)
"""
RESERVE = """
UPDATE credit_accounts SET balance = balance + 0, reserved = reserved + $2, updated_at = $3
WHERE user_id = $1 AND balance >= reserved + $2
"""
ACCOUNT = "SELECT balance, reserved, updated_at, user_id FROM credit_accounts WHERE user_id = $1"
LEDGER = """
INSERT INTO ledger_entries (kind, amount, held, balance_after, reference, unique_key, created_at,
  generation_id, user_id)
VALUES ('RESERVE', $1, $2, $3, NULL, $4, $5, $6, $7) RETURNING id
"""


Load = Callable[[Callable[[int], Awaitable[None]]], Awaitable[LoadResult]]


def loads(options: Options) -> dict[str, Load]:
    """Throughput: `clients` back-to-back loops (latency then follows from Little's law:
    clients / rate). Latency: `accept_rate` new generations a second, below saturation."""
    return {
        "throughput": lambda op: closed_loop(options.clients, options.duration, options.warmup, op),
        "latency": lambda op: open_loop(options.accept_rate, options.duration, options.warmup, op),
    }


async def kiln_accept(base_url: str, users: list[User], options: Options, load: Load) -> LoadResult:
    async with http_client(base_url, options.clients) as http:

        async def create(index: int) -> None:
            user = users[index % len(users)]
            data = await gql(http, CREATE, {"input": INPUT}, user.token)
            if data["createGeneration"]["status"] != "QUEUED":
                raise RuntimeError(str(data))

        return await load(create)


async def raw_accept(
    database: str, namespace: str, users: list[User], cost: int, model: str, load: Load
) -> LoadResult:
    """The same rows and the same Dramatiq message, without the GraphQL/ORM layers."""
    pool = await asyncpg.create_pool(pg_dsn(database), min_size=RAW_POOL, max_size=RAW_POOL)
    redis = aioredis.from_url(REDIS_URL)
    # The Lua script Dramatiq's RedisBroker enqueues with.
    dispatch = redis.register_script(dramatiq_redis._scripts["dispatch"])
    broker_id = str(uuid.uuid4())
    user_ids = [uuid.UUID(u.user_id) for u in users]
    params = json.dumps({"numOutputs": 1, "width": 64, "height": 64})
    assert pool is not None

    async def create(index: int) -> None:
        user_id = user_ids[index % len(user_ids)]
        generation_id = uuid.uuid4()
        now = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                INSERT_GENERATION,
                generation_id,
                model,
                INPUT["prompt"],
                params,
                cost,
                uuid.uuid4().hex,
                now,
                user_id,
            )
            if await conn.execute(RESERVE, user_id, cost, now) != "UPDATE 1":
                raise RuntimeError("insufficient credits")
            row = await conn.fetchrow(ACCOUNT, user_id)
            await conn.fetchval(
                LEDGER,
                -cost,
                cost,
                row["balance"] - row["reserved"],
                f"{generation_id}:1:reserve",
                now,
                generation_id,
                user_id,
            )
        message_id = str(uuid.uuid4())
        message = json.dumps(
            {
                "queue_name": RAW_QUEUE,
                "actor_name": "generation.run",
                "args": [str(generation_id)],
                "kwargs": {},
                "options": {"redis_message_id": message_id},
                "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000),
            }
        )
        await dispatch(
            keys=[namespace],
            args=[
                "enqueue",
                int(time.time() * 1000),
                RAW_QUEUE,
                broker_id,
                60000,
                86400000 * 7,
                0,
                7999,
                message_id,
                message,
            ],
        )

    try:
        return await load(create)
    finally:
        await pool.close()
        await redis.aclose()


async def run(options: Options) -> list[Row]:
    results: dict[str, tuple[LoadResult, LoadResult]] = {}
    async with kiln("accept", api_processes=options.api_processes) as stack:
        users = await register_users(stack.base_url, stack.database, options.clients)
        for name, load in loads(options).items():
            kiln_result = await kiln_accept(stack.base_url, users, options, load)
            conn = await asyncpg.connect(pg_dsn(stack.database))
            try:
                row = await conn.fetchrow("SELECT model, cost FROM generations LIMIT 1")
            finally:
                await conn.close()
            model, cost = (row["model"], row["cost"]) if row else (MODEL, 1)
            raw = await raw_accept(stack.database, stack.namespace, users, cost, model, load)
            results[name] = (kiln_result, raw)
    rows = load_rows("accept", "accepted/s", *results["throughput"], options, "workers paused")
    kiln_at, raw_at = results["latency"]
    note = f"offered {options.accept_rate:g}/s (open loop), {options.duration:.0f}s"
    if kiln_at.errors or raw_at.errors:
        note += f"; errors kiln={kiln_at.errors} raw={raw_at.errors}"
    rate = f"{options.accept_rate:g}/s"
    return [
        *rows,
        Row("accept", f"p50 at {rate}", kiln_at.p(50) * 1e3, raw_at.p(50) * 1e3, "ms", False, note),
        Row("accept", f"p99 at {rate}", kiln_at.p(99) * 1e3, raw_at.p(99) * 1e3, "ms", False),
    ]
