"""Shared pieces: settings of a run, load loops, percentiles and result rows."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from bench.http import LoadClient

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = os.environ.get("KILN_BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KILN_BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("KILN_BENCH_PG_USER", "postgres")
REDIS_HOST = os.environ.get("KILN_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("KILN_BENCH_REDIS_PORT", "6379"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
PASSWORD = "correct horse battery staple"
# Credits given to every benchmark user (direct SQL), so no request fails for lack of them.
CREDITS = 1_000_000_000
HTTP_TIMEOUT = 30.0

REGISTER = """
mutation Register($email: String!, $password: String!) {
  register(email: $email, password: $password) { token user { id } }
}
"""


@dataclass
class Options:
    quick: bool = False
    clients: int = 64
    workers: int = 2
    threads: int = 8
    api_processes: int = 1
    duration: float = 20.0
    warmup: float = 3.0
    generations: int = 2000
    subscribers: int = 1000
    inflight: int = 5000
    inflight_rate: float | None = None  # submissions per second; None: as fast as accepted
    provider_seconds: float = 10.0
    # Offered load for the latency measurement (accept): new generations per second.
    accept_rate: float = 100.0


@dataclass
class Row:
    """One line of the results table: Kiln's number, the raw limit of the machine for the same
    work, and Kiln as a fraction of it (for latencies: raw / Kiln, so 1.0 is as good as raw)."""

    benchmark: str
    metric: str
    kiln: float
    raw: float | None
    unit: str
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.raw is None or not self.kiln or not self.raw:
            return None
        return self.kiln / self.raw if self.higher_is_better else self.raw / self.kiln


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def succeeded(self, latency: float) -> None:
        self.ok += 1
        self.latencies.append(latency)

    def failed(self, error: Exception) -> None:
        self.errors += 1
        self.first_error = self.first_error or repr(error)[:300]


def load_rows(
    benchmark: str, metric: str, kiln: LoadResult, raw: LoadResult, options: Options, what: str
) -> list[Row]:
    """Rate, p50 and p99 of a closed-loop load on Kiln beside the same load on the raw side."""
    note = (
        f"{options.clients} clients, {options.duration:.0f}s, "
        f"{options.api_processes} API process(es), {what}"
    )
    if kiln.errors or raw.errors:
        first = kiln.first_error or raw.first_error
        note += f"; errors kiln={kiln.errors} raw={raw.errors} {first}"
    return [
        Row(benchmark, metric, kiln.rate, raw.rate, "/s", note=note),
        Row(benchmark, "p50", kiln.p(50) * 1000, raw.p(50) * 1000, "ms", False),
        Row(benchmark, "p99", kiln.p(99) * 1000, raw.p(99) * 1000, "ms", False),
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def closed_loop(
    clients: int,
    duration: float,
    warmup: float,
    operation: Callable[[int], Awaitable[None]],
) -> LoadResult:
    """`clients` loops call `operation(client_index)` back to back for `warmup` + `duration`
    seconds; only operations that start and end within the measured window count. An operation
    raising counts as an error."""
    result = LoadResult()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def loop(index: int) -> None:
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await operation(index)
            except Exception as error:
                if began >= measure_from:
                    result.failed(error)
                continue
            ended = time.perf_counter()
            if began >= measure_from and ended <= stop_at:
                result.succeeded(ended - began)

    await asyncio.gather(*(loop(i) for i in range(clients)))
    result.elapsed = duration
    return result


async def open_loop(
    rate: float,
    duration: float,
    warmup: float,
    operation: Callable[[int], Awaitable[None]],
) -> LoadResult:
    """`operation(i)` started `rate` times a second whatever the answers' pace, for `warmup` +
    `duration` seconds; latency counts from when each was due, so a stalled server is not
    hidden by fewer requests being sent (no coordinated omission). Only operations due in the
    measured window count."""
    result = LoadResult()
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    total = int(rate * (warmup + duration))
    running: set[asyncio.Task[None]] = set()

    async def one(index: int, due: float) -> None:
        try:
            await operation(index)
        except Exception as error:
            if due >= measure_from:
                result.failed(error)
            return
        if due >= measure_from:
            result.succeeded(loop.time() - due)

    for index in range(total):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    result.elapsed = duration
    return result


def pg_dsn(database: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def create_database(name: str) -> None:
    conn = await asyncpg.connect(pg_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(pg_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_redis_namespace(namespace: str) -> None:
    client = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i : i + 500])
    finally:
        await client.aclose()


@dataclass
class User:
    token: str
    user_id: str


async def gql(
    http: LoadClient,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """POST /graphql; raises when the answer carries errors or no data."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = orjson.dumps({"query": query, "variables": variables or {}})
    status, answer = await http.post("/graphql", body, headers)
    parsed: dict[str, Any] = orjson.loads(answer)
    if parsed.get("errors") or not parsed.get("data"):
        raise RuntimeError(f"{status} {str(parsed)[:300]}")
    data: dict[str, Any] = parsed["data"]
    return data


async def register_users(base_url: str, database: str, count: int) -> list[User]:
    """`count` new accounts over GraphQL, each then given CREDITS by direct SQL."""
    users: list[User] = []
    async with http_client(base_url, 8) as http:
        semaphore = asyncio.Semaphore(8)

        async def one() -> None:
            async with semaphore:
                email = f"bench-{uuid.uuid4().hex}@example.com"
                data = await gql(http, REGISTER, {"email": email, "password": PASSWORD})
                payload = data["register"]
                users.append(User(payload["token"], payload["user"]["id"]))

        await asyncio.gather(*(one() for _ in range(count)))
    conn = await asyncpg.connect(pg_dsn(database))
    try:
        await conn.execute("UPDATE credit_accounts SET balance = $1", CREDITS)
    finally:
        await conn.close()
    return users


def http_client(base_url: str, clients: int) -> LoadClient:
    """At most `clients` keep-alive connections (see bench/http.py for why not httpx)."""
    return LoadClient(base_url, clients, HTTP_TIMEOUT)
