"""Where the test suite finds PostgreSQL and Redis, and what happens when they are missing:
under CI (CI=true) a missing service fails the run; on a laptop the tests that need it skip."""

from __future__ import annotations

import os
import socket

import pytest

PG_HOST = os.environ.get("KILN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KILN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("KILN_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("KILN_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("KILN_TEST_REDIS_PORT", "6379"))

# Each part of the suite has its own database / Redis db so they never see each other's rows.
ADMIN_DSN = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"


def pg_url(database: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def need(service: str) -> None:
    """Call at the start of a fixture or test that needs 'postgres' or 'redis'."""
    host, port = (PG_HOST, PG_PORT) if service == "postgres" else (REDIS_HOST, REDIS_PORT)
    if _reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


def run_database(name: str) -> str:
    """A database name of this test run's own, so runs side by side never share rows."""
    return f"{name}_{os.getpid()}"


async def _as_admin(*statements: str, name: str) -> None:
    """First ends every session on database `name` (else PostgreSQL will not drop it), then
    runs the statements, as the superuser."""
    import asyncpg

    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def drop_database(name: str) -> None:
    await _as_admin(f'DROP DATABASE IF EXISTS "{name}"', name=name)


async def recreate_database(name: str) -> None:
    """Drop and create a PostgreSQL database (for a clean, migrated schema)."""
    need("postgres")
    await _as_admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"', name=name)
