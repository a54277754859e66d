"""A production stack (tests/e2e/stack.py: uvicorn and `dramatiq tasks` processes) on a
private Redis and PostgreSQL (tests/support/private_servers.py), in a database of its own, for
the tests that kill or stop those servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.e2e.stack import Stack, start_production
from tests.support.private_servers import PrivatePostgres, PrivateRedis


async def start_on_private_servers(
    data_dir: Path,
    redis: PrivateRedis,
    postgres: PrivatePostgres,
    database: str,
    env: dict[str, str],
) -> Stack:
    admin = await asyncpg.connect(postgres.url())
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return await asyncio.to_thread(
        start_production, data_dir, postgres.url(database), redis.url(), env
    )
