"""Running Kiln's migrations in a process of their own, as a deployment does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from tests.support.services import drop_database, need, pg_url, recreate_database, run_database

ROOT = Path(__file__).resolve().parents[2]


def migrate(database_url: str, *target: str) -> None:
    """`python -m tortoise migrate [app version]` against `database_url`."""
    result = subprocess.run(
        [sys.executable, "-m", "tortoise", "migrate", *target],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database_url, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@asynccontextmanager
async def scratch_postgres(name: str) -> AsyncIterator[str]:
    """The URL of an empty PostgreSQL database of its own, dropped afterwards (skips the
    test when PostgreSQL is not running)."""
    need("postgres")
    database = run_database(name)
    await recreate_database(database)
    try:
        yield pg_url(database)
    finally:
        await drop_database(database)


async def postgres(url: str, *statements: str) -> list[asyncpg.Record]:
    """Run the statements in order on a connection of their own; the last one's rows."""
    connection = await asyncpg.connect(url)
    try:
        rows: list[asyncpg.Record] = []
        for statement in statements:
            rows = await connection.fetch(statement)
        return rows
    finally:
        await connection.close()
