"""The operator commands, run as the README runs them (`manage.py ...` in its own process):
what an operator can fix is one line and exit status 1, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis
from graphql import build_schema as parse_sdl

from schema.build import build_schema
from tests.support.broker import stored_messages
from tests.support.migrations import scratch_postgres
from tests.support.services import need, pg_url, redis_url, run_database

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
REDIS_DB = 14


def manage(*args: str, stdin: str | None = None, **settings: str) -> subprocess.CompletedProcess:
    """`manage.py` with only the given settings (none leak in from the caller's shell or a
    developer's .env); stdin is not a terminal."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    env.update({"DATABASE_URL": "", "REDIS_URL": "", "LOG_FORMAT": "json"})
    env.update(settings)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_migrate_against_a_missing_database_says_so_in_one_line():
    need("postgres")
    missing = run_database("kiln_never_created")
    result = manage("migrate", DATABASE_URL=pg_url(missing))
    line = one_line_error(result)
    assert line.startswith("manage.py migrate: ")
    assert f'database "{missing}" does not exist' in line
    assert f"createdb -h {pg_url(missing).split('@')[1].split(':')[0]}" in line


def test_migrate_against_an_unreachable_server_says_so_in_one_line():
    line = one_line_error(manage("migrate", DATABASE_URL="postgres://kiln@127.0.0.1:9/kiln"))
    assert line.startswith("manage.py migrate: cannot reach the database at 127.0.0.1:9/kiln")


def test_create_admin_without_a_terminal_or_a_password_says_where_it_comes_from(tmp_path):
    line = one_line_error(manage("create-admin", "ops@example.com", DATA_DIR=str(tmp_path)))
    assert line == (
        "manage.py create-admin: no password: set KILN_ADMIN_PASSWORD, or run it on a terminal"
    )


def test_create_admin_with_a_short_password_says_why(tmp_path):
    result = manage(
        "create-admin", "ops@example.com", DATA_DIR=str(tmp_path), KILN_ADMIN_PASSWORD="short"
    )
    assert one_line_error(result) == (
        "manage.py create-admin: Passwords must be 8 to 256 characters."
    )


def test_create_admin_on_a_database_never_migrated_says_to_migrate():
    need("postgres")
    result = manage(
        "create-admin",
        "ops@example.com",
        DATABASE_URL=pg_url("postgres"),
        KILN_ADMIN_PASSWORD="a long password",
    )
    line = one_line_error(result)
    assert line.endswith("is not migrated: run `manage.py migrate` first")


def test_sweep_in_embedded_mode_is_refused_in_one_line(tmp_path):
    line = one_line_error(manage("sweep", DATA_DIR=str(tmp_path)))
    assert line.startswith("manage.py sweep: the embedded server sweeps by itself")


def test_schema_prints_the_sdl_codegen_reads():
    result = manage("schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == build_schema().as_str() + "\n"
    parsed = parse_sdl(result.stdout)
    assert parsed.query_type is not None and "generations" in parsed.query_type.fields


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with scratch_postgres("kiln_manage") as url:
        yield url


async def test_the_production_steps_migrate_create_an_admin_and_sweep(tmp_path, database_url):
    """The README's production steps on a fresh database: migrate, create the admin (then
    promote again, harmlessly), and one sweep that sends a stale QUEUED generation's job
    again to the workers' Redis queue."""
    need("redis")
    namespace = f"kiln-test-manage-{uuid.uuid4().hex}"
    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url(REDIS_DB),
        "REDIS_NAMESPACE": namespace,
        "DATA_DIR": str(tmp_path),
        "REQUEUE_AFTER_SECONDS": "1",
    }
    sync = redis.Redis.from_url(redis_url(REDIS_DB))
    try:
        migrated = manage("migrate", **settings)
        assert (migrated.returncode, migrated.stdout) == (0, "migrations applied\n"), migrated
        created = manage(
            "create-admin", "ops@example.com", KILN_ADMIN_PASSWORD="a long password", **settings
        )
        assert created.returncode == 0, created.stderr
        again = manage("create-admin", "OPS@example.com", KILN_ADMIN_PASSWORD="ignored", **settings)
        assert again.returncode == 0 and again.stdout == created.stdout, again
        admin_id = created.stdout.strip().rsplit("(", 1)[1].rstrip(")")

        stale = uuid.uuid4()
        connection = await asyncpg.connect(database_url)
        try:
            assert await connection.fetchval("SELECT role FROM users WHERE id = $1", admin_id) == (
                "ADMIN"
            )
            long_ago = datetime.now(UTC) - timedelta(minutes=5)
            await connection.execute(
                "INSERT INTO generations (id, user_id, kind, status, progress, stage, model, "
                "prompt, params, cost, attempts, version, created_at, queued_at) "
                "VALUES ($1, $2, 'IMAGE', 'QUEUED', 0, 'queued', 'pattern-v1', 'lost job', "
                "'{}', 0, 1, 1, $3, $3)",
                stale,
                uuid.UUID(admin_id),
                long_ago,
            )
        finally:
            await connection.close()

        swept = manage("sweep", **settings)
        assert swept.returncode == 0, swept.stderr
        assert swept.stdout == "requeued 1, timed out 0, settled 0 holds, pruned 0 keys\n"
        [job] = stored_messages(sync, namespace, "default")
        # Marked as a re-send (services/generations/leases.py): not repeated while it waits
        # on the queue.
        assert (job["actor_name"], job["args"]) == ("generation.run", [str(stale), "", "resent"])
    finally:
        for key in sync.scan_iter(f"{namespace}*"):
            sync.delete(key)
        sync.close()


def test_the_docstring_names_only_commands_that_exist():
    import manage as module

    named = re.findall(r"uv run manage\.py ([\w-]+)", module.__doc__ or "")
    assert set(named) == {"migrate", "create-admin", "sweep", "schema"}
    assert set(named) <= set(getattr(module, "COMMANDS", {}))
