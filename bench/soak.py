"""Soak (issue 17, item 7): many minutes (10 by default) of mixed load on one API process with
its workers: generations created at a steady rate over 50 users, subscriptions opened and
closed (sockets that watch one new generation to its final state, and sockets that follow
`myGenerations` for a few seconds), and page reads at a steady rate. Reports the API's RSS
over time (start, plateau, end, slope), its garbage-collection pauses, errors, and that every
generation reached a final state; with --tracemalloc, where the API's memory went between the
end of the first minute and the end of the run.

uv run python -m bench.soak [--minutes 10] [--create-rate 20] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from bench.common import Options, User, gql, http_client, open_loop, pg_dsn, register_users
from bench.documents import CREATE, PAGE
from bench.report import run_long
from bench.sampling import (
    METRICS_TOKEN,
    RssTrace,
    gc_stats,
    name_cycles,
    probe_env,
    snapshot_diff,
    take_snapshot,
)
from bench.stack import Run, kiln

USERS = 50
HOLD_SECONDS = 5.0  # how long a `myGenerations` socket stays open
FINAL_TIMEOUT = 120.0  # for a watched generation's final state, and for the run's end
SUBPROTOCOL = Subprotocol("graphql-transport-ws")
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
WATCH = "subscription W($id: ID!) { generationUpdated(id: $id) { id status version } }"
MINE = "subscription M { myGenerations { id status version } }"


@dataclass
class SoakOptions:
    minutes: float = 10.0
    create_rate: float = 20.0
    read_rate: float = 20.0
    watchers: int = 10  # sockets, each watching one new generation to its final state, again
    followers: int = 10  # sockets, each following myGenerations for HOLD_SECONDS, again
    tracemalloc: bool = False
    cycles: bool = False


@dataclass
class Tally:
    created: int = 0
    create_errors: int = 0
    reads: int = 0
    read_errors: int = 0
    sockets: int = 0  # opened and closed
    socket_errors: int = 0
    finals_seen: int = 0  # watched generations whose final state arrived
    messages: int = 0
    first_error: str = ""
    recent: deque[tuple[str, User]] = field(default_factory=lambda: deque(maxlen=200))

    def failed(self, kind: str, error: BaseException) -> None:
        setattr(self, f"{kind}_errors", getattr(self, f"{kind}_errors") + 1)
        self.first_error = self.first_error or f"{kind}: {error!r}"[:300]


async def socket_session(url: str, user: User, query: str, variables: dict[str, Any]) -> Any:
    ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=FINAL_TIMEOUT)
    await ws.send(
        json.dumps(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {user.token}"}}
        )
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), FINAL_TIMEOUT))
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no ack: {ack}")
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return ws


async def watcher(url: str, tally: Tally, stop_at: float) -> None:
    """Watches a generation created a moment ago until its final state, then another."""
    while time.monotonic() < stop_at:
        if not tally.recent:
            await asyncio.sleep(0.1)
            continue
        generation_id, user = tally.recent.pop()
        try:
            ws = await socket_session(url, user, WATCH, {"id": generation_id})
            async with ws:
                async with asyncio.timeout(FINAL_TIMEOUT):
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] != "next":
                            raise RuntimeError(f"unexpected message: {message}")
                        tally.messages += 1
                        if message["payload"]["data"]["generationUpdated"]["status"] in FINAL:
                            tally.finals_seen += 1
                            break
            tally.sockets += 1
        except Exception as error:
            tally.failed("socket", error)


async def follower(url: str, users: list[User], tally: Tally, stop_at: float, n: int) -> None:
    """Follows one user's generations for HOLD_SECONDS, leaves, and comes back as another."""
    for i in itertools.count(n):
        if time.monotonic() >= stop_at:
            return
        try:
            ws = await socket_session(url, users[i % len(users)], MINE, {})
            async with ws:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HOLD_SECONDS):
                        async for raw in ws:
                            if json.loads(raw)["type"] != "next":
                                raise RuntimeError(f"unexpected message: {raw[:200]!r}")
                            tally.messages += 1
                await ws.send(json.dumps({"id": "1", "type": "complete"}))
            tally.sockets += 1
        except Exception as error:
            tally.failed("socket", error)


async def load(run: Run, users: list[User], soak: SoakOptions, tally: Tally) -> None:
    seconds = soak.minutes * 60
    stop_at = time.monotonic() + seconds
    url = run.base_url.replace("http://", "ws://") + "/graphql"
    async with http_client(run.base_url, 64) as http:

        async def create(i: int) -> None:
            user = users[i % len(users)]
            try:
                variables = {"input": {"prompt": f"soak {i}", "width": 64, "height": 64}}
                data = await gql(http, CREATE, variables, user.token)
            except Exception as error:
                tally.failed("create", error)
                return
            tally.created += 1
            tally.recent.append((data["createGeneration"]["id"], user))

        async def page(i: int) -> None:
            try:
                await gql(http, PAGE, None, users[i % len(users)].token)
            except Exception as error:
                tally.failed("read", error)
                return
            tally.reads += 1

        await asyncio.gather(
            open_loop(soak.create_rate, seconds, 0.0, create),
            open_loop(soak.read_rate, seconds, 0.0, page),
            *(watcher(url, tally, stop_at) for _ in range(soak.watchers)),
            *(follower(url, users, tally, stop_at, n) for n in range(soak.followers)),
        )


async def unfinished(run: Run) -> int:
    """Waits up to FINAL_TIMEOUT for every generation to reach a final state; how many have
    not."""
    conn = await asyncpg.connect(pg_dsn(run.database))
    try:
        deadline = time.monotonic() + FINAL_TIMEOUT
        while True:
            left: int = await conn.fetchval(
                "SELECT count(*) FROM generations WHERE status NOT IN "
                "('COMPLETED', 'FAILED', 'CANCELLED')"
            )
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(1.0)
    finally:
        await conn.close()


async def soak_run(soak: SoakOptions, options: Options) -> list[str]:
    snapshots = Path(tempfile.mkdtemp(prefix="kiln-soak-tracemalloc-"))
    env = {"METRICS_TOKEN": METRICS_TOKEN}
    if soak.tracemalloc or soak.cycles:
        env |= probe_env(snapshots)
    async with kiln("soak", extra_env=env) as run:
        users = await register_users(run.base_url, run.database, USERS)
        await asyncio.to_thread(run.start_workers, options.workers, options.threads)
        await asyncio.to_thread(run.wait_ready)
        api = run.pids("api")[0]
        trace = RssTrace(api)
        before = await gc_stats(run.base_url)
        tally = Tally()
        trace.start()
        loading = asyncio.create_task(load(run, users, soak, tally))
        diff = cycles = ""
        if soak.tracemalloc or soak.cycles:
            await asyncio.sleep(60)
        if soak.tracemalloc:
            first = await take_snapshot(api, snapshots, 1)
        if soak.cycles:
            cycles = await name_cycles(api, snapshots)
        await loading
        if soak.tracemalloc:
            last = await take_snapshot(api, snapshots, 2)
            diff = await asyncio.to_thread(snapshot_diff, first, last)
        await trace.stop()
        gc = (await gc_stats(run.base_url)).minus(before)
        left = await unfinished(run)
    lines = [
        f"{soak.minutes:.0f} min: {soak.create_rate:.0f} creates/s over {USERS} users, "
        f"{soak.read_rate:.0f} page reads/s, {soak.watchers} sockets watching a new generation "
        f"to its final state and {soak.followers} following myGenerations for "
        f"{HOLD_SECONDS:.0f} s, each reconnecting; 1 API process, {options.workers} worker "
        f"process(es) x {options.threads} threads"
        + (" (API under tracemalloc)" if soak.tracemalloc else ""),
        f"{tally.created:,} generations created ({tally.create_errors} errors), {left} not in a "
        f"final state {FINAL_TIMEOUT:.0f} s after the load; {tally.reads:,} page reads "
        f"({tally.read_errors} errors); {tally.sockets:,} sockets opened and closed "
        f"({tally.socket_errors} errors), {tally.messages:,} messages, {tally.finals_seen:,} "
        "final states seen" + (f"; first error: {tally.first_error}" if tally.first_error else ""),
        trace.summary(),
        f"RSS by minute (MiB): {trace.series()}",
        f"GC: longest pause {gc.longest_ms:.1f} ms; {gc.summary()}",
    ]
    if cycles:
        lines.append(cycles)
    if diff:
        lines.append(f"tracemalloc, end of minute 1 -> end of the run:\n\n```\n{diff}\n```")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (10)")
    parser.add_argument("--create-rate", type=float, default=20.0, help="generations/s (20)")
    parser.add_argument("--read-rate", type=float, default=20.0, help="page reads/s (20)")
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--followers", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument("--tracemalloc", action="store_true", help="diff the API's memory")
    parser.add_argument(
        "--cycles", action="store_true", help="name the API's reference cycles for 10 s"
    )
    parser.add_argument("--results", help="append the figures to this file (bench/RESULTS.md)")
    args = parser.parse_args(argv)
    soak = SoakOptions(
        args.minutes,
        args.create_rate,
        args.read_rate,
        args.watchers,
        args.followers,
        args.tracemalloc,
        args.cycles,
    )
    options = Options(workers=args.workers, threads=args.threads)
    return run_long("soak", "soak", argv, args.results, soak_run(soak, options))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
