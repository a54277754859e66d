"""Read: `generations(first: 20)` with outputs at N concurrent clients, against the same SQL
(user by id, the page, its outputs) through asyncpg."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from bench.common import (
    LoadResult,
    Options,
    Row,
    User,
    closed_loop,
    gql,
    http_client,
    load_rows,
    pg_dsn,
    register_users,
)
from bench.documents import CREATE, PAGE
from bench.stack import Run, kiln

USERS = 8
PER_USER = 20
SEED_TIMEOUT = 180.0
RAW_POOL = 16

RAW_USER = "SELECT * FROM users WHERE id = $1"
RAW_PAGE = """
SELECT * FROM generations WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 21
"""
RAW_OUTPUTS = "SELECT * FROM generation_outputs WHERE generation_id = ANY($1::uuid[])"


async def seed(run: Run, options: Options) -> list[User]:
    """USERS accounts with PER_USER completed generations each (one output each)."""
    users = await register_users(run.base_url, run.database, USERS)
    async with http_client(run.base_url, 16) as http:
        semaphore = asyncio.Semaphore(16)

        async def create(user: User, i: int) -> None:
            async with semaphore:
                await gql(
                    http,
                    CREATE,
                    {"input": {"prompt": f"seed {i}", "width": 64, "height": 64}},
                    user.token,
                )

        await asyncio.gather(*(create(u, i) for u in users for i in range(PER_USER)))
    await asyncio.to_thread(run.start_workers, options.workers, options.threads)
    await asyncio.to_thread(run.wait_ready)
    conn = await asyncpg.connect(pg_dsn(run.database))
    try:
        deadline = time.monotonic() + SEED_TIMEOUT
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT count(*) FROM generations WHERE status='COMPLETED'")
            if done >= USERS * PER_USER:
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"seeding: only {done} of {USERS * PER_USER} completed")
    finally:
        await conn.close()
    return users


async def kiln_read(run: Run, users: list[User], options: Options) -> LoadResult:
    async with http_client(run.base_url, options.clients) as http:

        async def page(index: int) -> None:
            data = await gql(http, PAGE, None, users[index % len(users)].token)
            edges = data["generations"]["edges"]
            if len(edges) != PER_USER or not edges[0]["node"]["outputs"]:
                raise RuntimeError(f"unexpected page: {str(data)[:200]}")

        return await closed_loop(options.clients, options.duration, options.warmup, page)


async def raw_read(run: Run, users: list[User], options: Options) -> LoadResult:
    pool = await asyncpg.create_pool(pg_dsn(run.database), min_size=RAW_POOL, max_size=RAW_POOL)
    assert pool is not None
    user_ids = [uuid.UUID(u.user_id) for u in users]

    async def page(index: int) -> None:
        user_id = user_ids[index % len(user_ids)]
        async with pool.acquire() as conn:
            await conn.fetchrow(RAW_USER, user_id)
            rows = await conn.fetch(RAW_PAGE, user_id)
            outputs = await conn.fetch(RAW_OUTPUTS, [r["id"] for r in rows[:PER_USER]])
        if len(rows) != PER_USER or not outputs:
            raise RuntimeError("unexpected page")

    try:
        return await closed_loop(options.clients, options.duration, options.warmup, page)
    finally:
        await pool.close()


async def run(options: Options) -> list[Row]:
    async with kiln("read", api_processes=options.api_processes) as stack:
        users = await seed(stack, options)
        # The workers are idle now; stop them so they take no CPU from the measurement.
        for process in [p for p in stack.stack.processes if p.name == "worker"]:
            process.popen.terminate()
            await asyncio.to_thread(process.popen.wait, 15)
        result = await kiln_read(stack, users, options)
        raw = await raw_read(stack, users, options)
    return load_rows("read", "requests/s", result, raw, options, "20 rows + outputs")
