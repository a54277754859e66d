"""Pipeline: generations completed per second end to end (API accepts them first, then
`dramatiq tasks` with N processes drains them; the local provider with zero delay), against
Dramatiq no-op actor throughput on the same broker with the same processes and threads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench.common import (
    REDIS_URL,
    ROOT,
    Options,
    Row,
    User,
    delete_redis_namespace,
    gql,
    http_client,
    pg_dsn,
    register_users,
)
from bench.documents import CREATE
from bench.stack import Run, kiln

USERS = 16
DRAIN_TIMEOUT = 600.0


async def drain_rate(
    total: int, count: Callable[[], Awaitable[int]], alive: Callable[[], bool]
) -> tuple[float, float]:
    """Poll `count()` until it reaches `total`: (items per second from the first item seen to
    the last, seconds from the first to the last)."""
    first_at: float | None = None
    first_count = 0
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        done = await count()
        now = time.perf_counter()
        if done and first_at is None:
            first_at, first_count = now, done
        if done >= total:
            assert first_at is not None
            span = now - first_at
            return ((done - first_count) / span if span else float("nan")), span
        if not alive():
            raise RuntimeError("the worker processes exited")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"not drained after {DRAIN_TIMEOUT:.0f}s")


async def fill(run: Run, users: list[User], total: int) -> None:
    async with http_client(run.base_url, 32) as http:
        semaphore = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with semaphore:
                await gql(
                    http,
                    CREATE,
                    {"input": {"prompt": f"p {i}", "width": 64, "height": 64}},
                    users[i % len(users)].token,
                )

        await asyncio.gather(*(create(i) for i in range(total)))


async def kiln_pipeline(options: Options) -> tuple[float, float, int, Steady]:
    async with kiln("pipeline") as run:
        users = await register_users(run.base_url, run.database, USERS)
        await fill(run, users, options.generations)
        conn = await asyncpg.connect(pg_dsn(run.database))
        try:
            await asyncio.to_thread(run.start_workers, options.workers, options.threads)

            async def completed() -> int:
                value = await conn.fetchval(
                    "SELECT count(*) FROM generations WHERE status = 'COMPLETED'"
                )
                return int(value)

            def alive() -> bool:
                return all(p.popen.poll() is None for p in run.stack.processes)

            rate, span = await drain_rate(options.generations, completed, alive)
            failed = await conn.fetchval(
                "SELECT count(*) FROM generations WHERE status <> 'COMPLETED'"
            )
            times = [
                r["t"]
                for r in await conn.fetch(
                    "SELECT extract(epoch FROM completed_at) AS t FROM generations "
                    "WHERE status = 'COMPLETED' ORDER BY completed_at"
                )
            ]
        finally:
            await conn.close()
    return rate, span, int(failed), steady(times)


def steady(times: list[Any]) -> Steady:
    """The completion rate between the 5th and the 95th percentile completion, and when the
    50th, 95th and last completion came (seconds after the first)."""
    if len(times) < 20:
        return Steady(float("nan"), [])
    t = [float(v) for v in times]
    lo, hi = t[len(t) * 5 // 100], t[len(t) * 95 // 100]
    rate = (len(t) * 90 // 100) / (hi - lo) if hi > lo else float("nan")
    marks = [t[len(t) // 2] - t[0], t[len(t) * 95 // 100] - t[0], t[-1] - t[0]]
    return Steady(rate, marks)


@dataclass
class Steady:
    rate: float
    marks: list[float]


async def raw_pipeline(options: Options) -> float:
    namespace = f"kiln-bench-{os.getpid()}_noop"
    env = {
        **os.environ,
        "BENCH_REDIS_URL": REDIS_URL,
        "BENCH_NAMESPACE": namespace,
        "PYTHONUNBUFFERED": "1",
    }
    redis = aioredis.from_url(REDIS_URL)
    process: subprocess.Popen[bytes] | None = None
    try:
        # Enqueue in this process through the same broker class the workers read from.
        code = (
            "from bench import noop_actors\n"
            f"for i in range({options.generations}): noop_actors.noop.send(i)\n"
        )
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        process = await asyncio.to_thread(
            subprocess.Popen,
            [
                sys.executable,
                "-m",
                "dramatiq",
                "bench.noop_actors",
                "--processes",
                str(options.workers),
                "--threads",
                str(options.threads),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        async def done() -> int:
            return int(await redis.get(f"{namespace}:done") or 0)

        def alive() -> bool:
            return process is not None and process.poll() is None

        rate, _ = await drain_rate(options.generations, done, alive)
        return rate
    finally:
        if process is not None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                await asyncio.to_thread(process.wait, 15)
        await redis.aclose()
        await delete_redis_namespace(namespace)


async def run(options: Options) -> list[Row]:
    rate, span, not_completed, mid = await kiln_pipeline(options)
    raw = await raw_pipeline(options)
    note = (
        f"{options.generations} generations, {options.workers} processes x {options.threads} "
        f"threads, LOCAL_PROVIDER_DELAY=0, drained in {span:.1f}s"
    )
    if mid.marks:
        note += (
            "; completions after the first: 50% at {:.1f}s, 95% at {:.1f}s, last at {:.1f}s".format(
                *mid.marks
            )
        )
    if not_completed:
        note += f"; {not_completed} not COMPLETED"
    return [
        Row("pipeline", "completed/s", rate, raw, "/s", note=note),
        Row("pipeline", "completed/s, 5%-95%", mid.rate, raw, "/s"),
    ]
