"""Start and stop Kiln for a benchmark: a fresh PostgreSQL database and Redis namespace per
benchmark, `tortoise migrate`, uvicorn (the API) and optionally `dramatiq tasks` workers.

Reuses the end-to-end tests' process handling (tests/e2e/stack.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    REDIS_URL,
    create_database,
    delete_redis_namespace,
    drop_database,
    pg_dsn,
)
from tests.e2e.stack import (
    E2E_API_KEY_PEPPER,
    E2E_JWT_SECRET,
    MIGRATE_TIMEOUT,
    WORKER_READY_LINE,
    Stack,
    StackError,
    base_env,
    free_port,
    write_catalogue,
)

# Limits no benchmark client trips (they all come from one address).
RATE_LIMIT = 1_000_000_000
READY_TIMEOUT = 60.0


class BenchStack(Stack):
    """A Stack whose worker process count is chosen per benchmark."""

    worker_processes: int = 0

    def _workers_booted(self) -> bool:
        workers = [p for p in self.processes if p.name == "worker"]
        return all(
            p.output(this_run=True).count(WORKER_READY_LINE) >= self.worker_processes
            for p in workers
        )


@dataclass
class Run:
    name: str
    database: str
    namespace: str
    data_dir: Path
    stack: BenchStack
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def start_workers(self, processes: int, threads: int) -> None:
        self.stack.worker_processes = processes
        self.stack.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "dramatiq",
                "tasks",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
            ],
            self.env,
        )

    def wait_ready(self) -> None:
        self.stack.wait_ready(timeout=READY_TIMEOUT)

    def pids(self, name: str) -> list[int]:
        return [p.popen.pid for p in self.stack.processes if p.name == name]


def _start(
    run_name: str,
    database: str,
    namespace: str,
    data_dir: Path,
    extra_env: dict[str, str],
    api_processes: int,
    catalogue_extra: str,
) -> Run:
    catalogue = write_catalogue(data_dir)
    catalogue.write_text(catalogue.read_text() + catalogue_extra)
    stack = BenchStack("bench", free_port(), data_dir, catalogue)
    env = base_env(
        DATABASE_URL=pg_dsn(database),
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=namespace,
        # Production-like settings must bring their own secrets (the API and workers refuse
        # to start without them).
        JWT_SECRET=E2E_JWT_SECRET,
        API_KEY_PEPPER=E2E_API_KEY_PEPPER,
        DATA_DIR=str(data_dir),
        CATALOGUE_PATH=str(stack.catalogue_path),
        LOCAL_PROVIDER_DELAY="0",
        RATE_LIMIT_PER_USER=str(RATE_LIMIT),
        RATE_LIMIT_PER_PRIORITY_USER=str(RATE_LIMIT),
        RATE_LIMIT_PER_IP=str(RATE_LIMIT),
        QUERY_RATE_LIMIT_PER_USER=str(RATE_LIMIT),
        QUERY_RATE_LIMIT_PER_PRIORITY_USER=str(RATE_LIMIT),
        QUERY_RATE_LIMIT_PER_IP=str(RATE_LIMIT),
        FETCH_ALLOW_HOSTS="127.0.0.1",
        # The sweeper must not re-send queued work while a benchmark holds workers back.
        REQUEUE_AFTER_SECONDS="3600",
        **extra_env,
    )
    migrate = stack.spawn("migrate", [sys.executable, "-m", "tortoise", "migrate"], env)
    try:
        code = migrate.popen.wait(timeout=MIGRATE_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    stack.processes.remove(migrate)
    migrate.log_file.close()
    if code != 0:
        raise StackError(f"`tortoise migrate` failed ({code})\n{migrate.output(100)}")
    stack.spawn(
        "api",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(stack.port),
            "--no-access-log",
            # As in production (README): Kiln's HTTP protocol (limits on request heads), no
            # per-message deflate on sockets, and keep-alive longer than any client's or
            # balancer's idle timeout.
            "--http",
            "web.http_protocol:KilnHttpProtocol",
            "--ws-per-message-deflate",
            "false",
            "--timeout-keep-alive",
            "75",
            "--workers",
            str(api_processes),
        ],
        env,
    )
    run = Run(run_name, database, namespace, data_dir, stack, env)
    try:
        run.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return run


def _keep_logs(name: str, data_dir: Path) -> Path:
    kept = Path(tempfile.mkdtemp(prefix=f"kiln-bench-logs-{name}-"))
    for log in data_dir.glob("*.log"):
        shutil.copy(log, kept)
    return kept


@asynccontextmanager
async def kiln(
    name: str,
    extra_env: dict[str, str] | None = None,
    api_processes: int = 1,
    catalogue_extra: str = "",
) -> AsyncIterator[Run]:
    """Kiln's API (`api_processes` uvicorn processes; no workers yet) on its own database and
    namespace, with the end-to-end tests' catalogue plus `catalogue_extra`; everything is
    stopped, dropped and deleted on the way out, except the processes' logs of a failed
    benchmark, which are kept in a kiln-bench-logs-* directory (printed) to read."""
    tag = f"{os.getpid()}_{name}"
    database = f"kiln_bench_{tag}"
    namespace = f"kiln-bench-{tag}"
    data_dir = Path(tempfile.mkdtemp(prefix=f"kiln-bench-{name}-"))
    await create_database(database)
    run: Run | None = None
    try:
        run = await asyncio.to_thread(
            _start,
            name,
            database,
            namespace,
            data_dir,
            extra_env or {},
            api_processes,
            catalogue_extra,
        )
        yield run
    except BaseException:
        kept = await asyncio.to_thread(_keep_logs, name, data_dir)
        print(f"logs of the failed run: {kept}", file=sys.stderr)
        raise
    finally:
        if run is not None:
            await asyncio.to_thread(run.stack.stop)
        await drop_database(database)
        await delete_redis_namespace(namespace)
        shutil.rmtree(data_dir, ignore_errors=True)
