"""Fan-out: N WebSocket subscribers (`generationUpdated`), each on its own generation, while
the benchmark publishes status updates on the generations' Redis channels at a steady
RATE per second (the issue's "workers publish 1,000 status updates per second"), whatever N
is: the same messages Kiln's workers publish, captured from the API's own announcements, with
the publish time in `stage`. Every subscriber gets PROCESSING, then its final COMPLETED.
Measures publish -> receipt latency, lost final states (a subscriber whose COMPLETED never
arrives), versions that went backwards, and the API's RSS per idle subscribed connection.
Raw limit: the same messages, at the same rate, through Redis pub/sub to N plain subscribers
(one Redis connection each) in this process. Redis's `maxclients` is raised for the run when
N needs it, and restored afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.common import (
    REDIS_URL,
    Options,
    Row,
    User,
    gql,
    http_client,
    percentile,
    register_users,
)
from bench.documents import CREATE, WATCH
from bench.stack import Run, kiln

USERS = 10
RATE = 1000.0  # status updates published per second, in total over all subscribers
TICK = 0.01  # the publisher sends what is due every TICK seconds (~10 updates at RATE)
CONNECT_CONCURRENCY = 50
STEP_TIMEOUT = 120.0
SUBPROTOCOL = Subprotocol("graphql-transport-ws")


@dataclass
class Receipts:
    expected: int = 0
    latencies: list[float] = field(default_factory=list)
    # (publish time, status, latency) of every receipt, for the breakdown on stderr
    samples: list[tuple[float, str, float]] = field(default_factory=list)
    finals: int = 0
    backwards: int = 0  # messages whose version was not newer than one already received
    rate: float = 0.0  # updates per second actually published
    all_final: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, status: str, stage: str) -> None:
        published = float(stage[2:])
        latency = time.time() - published
        self.latencies.append(latency)
        self.samples.append((published, status, latency))

    def breakdown(self, label: str) -> None:
        """p50/p99 per status and per second of publishing, on stderr."""
        if not self.samples:
            return
        start = min(s[0] for s in self.samples)
        groups: dict[str, list[float]] = {}
        for published, status, latency in self.samples:
            groups.setdefault(status, []).append(latency)
            groups.setdefault(f"second {int(published - start):>3}", []).append(latency)
        for name, values in sorted(groups.items()):
            print(
                f"{label} {name}: n={len(values)} p50={percentile(values, 50) * 1000:.1f} ms "
                f"p99={percentile(values, 99) * 1000:.1f} ms max={max(values) * 1000:.1f} ms",
                file=sys.stderr,
            )

    def final(self) -> None:
        self.finals += 1
        if self.finals >= self.expected:
            self.all_final.set()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """While updates are measured, this process's garbage collector leaves alone the objects
    of the N connections it holds: a full collection over them stalled the load generator
    (not Kiln, not Redis) for up to a second, on the Kiln and the raw side alike."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def start_profiler(pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """With KILN_BENCH_PYSPY=<file>, py-spy records the API process while updates are
    published (raw format, for flame graphs or grep)."""
    out = os.environ.get("KILN_BENCH_PYSPY")
    if not out:
        return None
    command = ["py-spy", "record", "-p", str(pid), "-d", f"{seconds:.0f}", "-f", "raw", "-o", out]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stamped(template: dict[str, Any], status: str, version: int) -> bytes:
    message = copy.copy(template)
    message.update(
        status=status,
        version=version,
        progress=1.0 if status == "COMPLETED" else 0.5,
        stage=f"t={time.time():.6f}",
    )
    return orjson.dumps(message)


async def publish_paced(
    redis: aioredis.Redis, channels: list[str], templates: list[dict[str, Any]]
) -> float:
    """PROCESSING to every channel, then the final COMPLETED to every channel, RATE updates per
    second in all (a pipeline of what is due every TICK). Returns the rate achieved."""
    plan = [
        (channel, template, status, version)
        for status, version in (("PROCESSING", 2), ("COMPLETED", 3))
        for channel, template in zip(channels, templates, strict=True)
    ]
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while sent < len(plan):
        due = min(len(plan), int((loop.time() - start) * RATE) + 1)
        if due > sent:
            async with redis.pipeline(transaction=False) as pipe:
                for channel, template, status, version in plan[sent:due]:
                    pipe.publish(channel, stamped(template, status, version))
                await pipe.execute()
            sent = due
        await asyncio.sleep(TICK)
    elapsed = loop.time() - start
    return sent / elapsed if elapsed else 0.0


@contextlib.asynccontextmanager
async def redis_clients_for(n: int) -> AsyncIterator[None]:
    """Raises Redis's maxclients so N more connections fit (the raw side opens one per
    subscriber), and puts the old value back afterwards."""
    admin = aioredis.from_url(REDIS_URL)
    try:
        before = int(str((await admin.config_get("maxclients"))["maxclients"]))
        needed = n + 1000  # the API, this process's publisher, other users of this Redis
        if needed > before:
            await admin.config_set("maxclients", needed)
        try:
            yield
        finally:
            if needed > before:
                await admin.config_set("maxclients", before)
    finally:
        await admin.aclose()


async def subscribe_ws(
    url: str, token: str, generation_id: str, ready: asyncio.Event, receipts: Receipts
) -> ClientConnection:
    ws = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=STEP_TIMEOUT, max_queue=None)
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), STEP_TIMEOUT))
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"no ack: {ack}")
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": WATCH, "variables": {"id": generation_id}},
            }
        )
    )

    async def read() -> None:
        last = 0
        with contextlib.suppress(Exception):
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") != "next":
                    if message.get("type") in ("complete", "error"):
                        return
                    continue
                node = message["payload"]["data"]["generationUpdated"]
                if node["version"] <= last:
                    receipts.backwards += 1
                last = node["version"]
                if node["status"] == "QUEUED":
                    ready.set()
                    continue
                receipts.record(node["status"], node["stage"])
                if node["status"] == "COMPLETED":
                    receipts.final()
                    return

    asyncio.get_running_loop().create_task(read())
    return ws


async def kiln_fanout(run: Run, options: Options) -> tuple[Receipts, int, float]:
    n = options.subscribers
    users = await register_users(run.base_url, run.database, USERS)
    redis = aioredis.from_url(REDIS_URL)
    templates: dict[str, dict[str, Any]] = {}
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"{run.namespace}:generation:*")
    owners: dict[str, User] = {}
    async with http_client(run.base_url, 32) as http:
        semaphore = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with semaphore:
                user = users[i % len(users)]
                data = await gql(
                    http,
                    CREATE,
                    {"input": {"prompt": f"f {i}", "width": 64, "height": 64}},
                    user.token,
                )
                owners[data["createGeneration"]["id"]] = user

        await asyncio.gather(*(create(i) for i in range(n)))
    deadline = time.monotonic() + STEP_TIMEOUT
    while len(templates) < n and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message:
            body = orjson.loads(message["data"])
            templates[body["id"]] = body
    await pubsub.aclose()
    if len(templates) < n:
        raise RuntimeError(f"captured {len(templates)} of {n} announcements")

    api_pid = run.pids("api")[0]
    rss_before = rss_bytes(api_pid)
    receipts = Receipts(expected=n)
    sockets: list[ClientConnection] = []
    readies: list[asyncio.Event] = []
    ws_url = run.base_url.replace("http", "ws") + "/graphql"
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
    ids = list(templates)

    async def open_one(generation_id: str) -> None:
        ready = asyncio.Event()
        readies.append(ready)
        async with semaphore:
            sockets.append(
                await subscribe_ws(
                    ws_url, owners[generation_id].token, generation_id, ready, receipts
                )
            )
            await asyncio.wait_for(ready.wait(), STEP_TIMEOUT)

    try:
        await asyncio.gather(*(open_one(g) for g in ids))
        await asyncio.sleep(1.0)
        rss_per_conn = (rss_bytes(api_pid) - rss_before) / n
        channels = [f"{run.namespace}:generation:{g}" for g in ids]
        profiler = start_profiler(api_pid, 2 * n / RATE + 2)
        with quiet_collector():
            receipts.rate = await publish_paced(redis, channels, [templates[g] for g in ids])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receipts.all_final.wait(), STEP_TIMEOUT)
        await asyncio.sleep(0.5)
        if profiler is not None:
            await asyncio.to_thread(profiler.wait)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await redis.aclose()
    return receipts, n - receipts.finals, rss_per_conn


async def raw_fanout(namespace: str, options: Options, sample: dict[str, Any]) -> Receipts:
    n = options.subscribers
    receipts = Receipts(expected=n)
    channels = [f"{namespace}:rawfan:{i}" for i in range(n)]
    publisher = aioredis.from_url(REDIS_URL)
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(n)]
    pubsubs = [c.pubsub() for c in clients]
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def sub(pubsub: Any, channel: str) -> None:
        async with semaphore:
            await pubsub.subscribe(channel)
            await pubsub.get_message(timeout=STEP_TIMEOUT)  # the subscribe confirmation

    async def listen(pubsub: Any) -> None:
        while True:
            message = await pubsub.get_message(timeout=STEP_TIMEOUT)
            if message is None:
                return
            if message["type"] != "message":
                continue
            body = orjson.loads(message["data"])
            receipts.record(body["status"], body["stage"])
            if body["status"] == "COMPLETED":
                receipts.final()
                return

    try:
        await asyncio.gather(*(sub(p, c) for p, c in zip(pubsubs, channels, strict=True)))
        listeners = [asyncio.create_task(listen(p)) for p in pubsubs]
        with quiet_collector():
            receipts.rate = await publish_paced(publisher, channels, [sample] * n)
            await asyncio.wait_for(asyncio.gather(*listeners), STEP_TIMEOUT)
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()
        for client in clients:
            await client.aclose()
        await publisher.aclose()
    return receipts


async def run(options: Options) -> list[Row]:
    async with kiln("fanout") as stack:
        receipts, lost, rss = await kiln_fanout(stack, options)
        sample = {"id": "x", "status": "QUEUED", "stage": "queued", "version": 1}
        async with redis_clients_for(options.subscribers):
            raw = await raw_fanout(stack.namespace, options, sample)
    n = options.subscribers
    receipts.breakdown("kiln")
    raw.breakdown("raw")
    note = (
        f"{n} subscribers, 2 updates each (PROCESSING, COMPLETED), published at "
        f"{receipts.rate:,.0f}/s (raw {raw.rate:,.0f}/s); lost finals kiln={lost} "
        f"raw={n - raw.finals}; versions backwards kiln={receipts.backwards}; "
        f"API RSS/idle connection {rss / 1024:.0f} KiB"
        + ("; py-spy attached to the API" if os.environ.get("KILN_BENCH_PYSPY") else "")
    )
    k, r = receipts.latencies, raw.latencies
    return [
        Row("fanout", "delivered", len(k), len(r), "msgs", note=note),
        Row("fanout", "lost final states", lost, n - raw.finals, "", False),
        Row(
            "fanout", "latency p50", percentile(k, 50) * 1000, percentile(r, 50) * 1000, "ms", False
        ),
        Row(
            "fanout", "latency p99", percentile(k, 99) * 1000, percentile(r, 99) * 1000, "ms", False
        ),
        Row("fanout", "API RSS per connection", rss / 1024, None, "KiB", False),
    ]
