"""In flight: many generations against a fake asynchronous (Replicate-like) provider whose
predictions take T seconds each, with the workers' threads capped (16 by default: 2 processes
x 8 threads). A worker thread must never wait for a prediction, so every generation should
complete within 1.2 x T of being queued. The raw limit is T itself.

BENCH_INFLIGHT_WEBHOOKS=1 runs it with Replicate's webhooks on (the fake signs and POSTs each
finished prediction to the API's /webhooks/providers/replicate; polls are only the safety
net); by default results are found by polling."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time

import asyncpg
import httpx

from bench.common import (
    ROOT,
    Options,
    Row,
    gql,
    http_client,
    percentile,
    pg_dsn,
    register_users,
)
from bench.documents import CREATE
from bench.stack import free_port, kiln

USERS = 16
TOKEN = "r8_bench_fake"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"kiln-bench-inflight-webhook-key").decode()
WEBHOOKS = os.environ.get("BENCH_INFLIGHT_WEBHOOKS", "") not in ("", "0")
MODEL = "bench-queued"
# A Replicate-only model whose route states the provider's usual duration, as an operator
# would from the provider's documentation or their own measurements.
CATALOGUE = """
[models.{model}]
kind = "IMAGE"
cost_per_output = 1

[[models.{model}.routes]]
provider = "replicate"
model = "black-forest-labs/flux-schnell"
expected_seconds = {seconds}
"""


def start_fake(seconds: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_FAKE_SECONDS": str(seconds),
        "BENCH_FAKE_TOKEN": TOKEN,
        "BENCH_FAKE_WEBHOOK_SECRET": WEBHOOK_SECRET if WEBHOOKS else "",
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "bench.fake_replicate:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning",
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/predictions/none", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("fake Replicate did not start")


async def run(options: Options) -> list[Row]:
    seconds = options.provider_seconds
    total = options.inflight
    fake, url = await asyncio.to_thread(start_fake, seconds)
    try:
        env = {"REPLICATE_API_TOKEN": TOKEN, "REPLICATE_BASE_URL": f"{url}/v1"}
        if WEBHOOKS:
            env["REPLICATE_WEBHOOK_SECRET"] = WEBHOOK_SECRET  # the API verifies them
        model = CATALOGUE.format(model=MODEL, seconds=seconds)
        async with kiln("inflight", env, catalogue_extra=model) as stack:
            if WEBHOOKS:
                # The workers ask Replicate to call the API back (known once it listens).
                stack.env["PUBLIC_BASE_URL"] = stack.base_url
            users = await register_users(stack.base_url, stack.database, USERS)
            await asyncio.to_thread(stack.start_workers, options.workers, options.threads)
            await asyncio.to_thread(stack.wait_ready)
            started = time.monotonic()
            async with http_client(stack.base_url, 32) as http:
                semaphore = asyncio.Semaphore(32)

                async def create(i: int) -> None:
                    if options.inflight_rate:  # the i-th submission leaves at i / rate
                        await asyncio.sleep(started + i / options.inflight_rate - time.monotonic())
                    body = {
                        "prompt": f"q {i}",
                        "model": MODEL,
                        "width": 64,
                        "height": 64,
                        # gql() retries a dropped connection; the key makes that safe.
                        "idempotencyKey": f"inflight-{i}",
                    }
                    async with semaphore:
                        await gql(http, CREATE, {"input": body}, users[i % USERS].token)

                await asyncio.gather(*(create(i) for i in range(total)))
            submitted = time.monotonic() - started
            conn = await asyncpg.connect(pg_dsn(stack.database))
            try:
                deadline = time.monotonic() + 3 * seconds + 60
                final = 0
                while time.monotonic() < deadline:
                    final = await conn.fetchval(
                        "SELECT count(*) FROM generations "
                        "WHERE status IN ('COMPLETED', 'FAILED', 'CANCELED')"
                    )
                    if final >= total:
                        break
                    await asyncio.sleep(0.5)
                rows = await conn.fetch(
                    "SELECT status, extract(epoch FROM completed_at - queued_at) AS took, "
                    "extract(epoch FROM started_at - queued_at) AS waited, "
                    "extract(epoch FROM completed_at - started_at) AS ran "
                    "FROM generations"
                )
                # Polls per generation: each GET of a prediction is one logged call.
                polls = await conn.fetchval(
                    "SELECT count(*) FROM api_call_logs WHERE method = 'GET' "
                    "AND url LIKE '%/predictions/%'"
                )
            finally:
                await conn.close()
    finally:
        fake.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(fake.wait, 10)
        if fake.poll() is None:
            fake.kill()
    took = [float(r["took"]) for r in rows if r["status"] == "COMPLETED" and r["took"]]
    completed = len(took)
    waited = [float(r["waited"]) for r in rows if r["waited"] is not None]
    ran = [float(r["ran"]) for r in rows if r["status"] == "COMPLETED" and r["ran"] is not None]
    within = sum(1 for t in took if t <= 1.2 * seconds)
    note = (
        f"{'webhooks' if WEBHOOKS else 'polling'}, "
        f"{f'{options.inflight_rate:g}/s' if options.inflight_rate else 'all at once'}, "
        f"{total} generations, T={seconds:g}s, {options.workers}x{options.threads} worker "
        f"threads, submitted in {submitted:.1f}s; completed {completed}, within 1.2T {within}, "
        f"not completed {total - completed}; queued->started p50 "
        f"{percentile(waited, 50):.2f}s, p99 {percentile(waited, 99):.2f}s; started->completed "
        f"p50 {percentile(ran, 50):.2f}s, p99 {percentile(ran, 99):.2f}s; "
        f"{int(polls) / max(total, 1):.2f} polls per generation"
    )
    return [
        Row("inflight", "within 1.2T", within, total, "generations", note=note),
        Row("inflight", "queued->completed p50", percentile(took, 50), seconds, "s", False),
        Row("inflight", "queued->completed p99", percentile(took, 99), seconds, "s", False),
        Row("inflight", "queued->completed max", max(took, default=float("nan")), seconds, "s",
            False),
    ]  # fmt: skip
