"""CPU per request through Kiln's whole ASGI app, in one process, without sockets or a load
generator: the steadiest measure of the API's own cost on a shared machine (the benchmarks'
throughput moves with whatever else runs; CPU time per request much less).

uv run python -m bench.inprocess accept|read [--requests N] [--profile tottime|cumulative]

Runs against a fresh PostgreSQL database and Redis namespace, like the benchmarks, with one
user (and, for `read`, twenty completed generations with an output each), and sends the same
request as `accept` or `read` N times, one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvloop

from bench.accept import CREATE, INPUT
from bench.common import (
    PASSWORD,
    REDIS_URL,
    create_database,
    delete_redis_namespace,
    drop_database,
    pg_dsn,
)
from bench.documents import PAGE
from tests.e2e.stack import E2E_API_KEY_PEPPER, E2E_JWT_SECRET

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def post(app: ASGIApp, body: bytes, token: str | None) -> dict[str, Any]:
    """One POST /graphql through the app, as uvicorn would hand it over."""
    headers = [(b"content-type", b"application/json"), (b"host", b"kiln.bench")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer: dict[str, Any] = orjson.loads(b"".join(chunks))
    if answer.get("errors"):
        raise RuntimeError(f"request failed: {answer['errors']}")
    return answer


def graphql(query: str, variables: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"query": query, "variables": variables or {}})


async def measure(which: str, requests: int, profile: str | None) -> None:
    import runtime
    import server
    from services import credits, runner

    app = server.create_app()
    async with app.router.lifespan_context(app):
        registered = await post(
            app,
            graphql(
                "mutation R($e: String!, $p: String!) { register(email: $e, password: $p) "
                "{ token user { id } } }",
                {"e": "bench@kiln.test", "p": PASSWORD},
            ),
            None,
        )
        token = registered["data"]["register"]["token"]
        await credits.adjust(
            uuid.UUID(registered["data"]["register"]["user"]["id"]), 1_000_000, "bench"
        )
        body = graphql(CREATE, {"input": INPUT})
        if which == "read":
            rt = runtime.current()
            for _ in range(20):
                created = await post(app, body, token)
                generation_id = uuid.UUID(created["data"]["createGeneration"]["id"])
                await runner.run_generation(generation_id, rt.catalogue, rt.providers, rt.store)
            body = graphql(PAGE)
        for _ in range(50):  # warm: caches, prepared operations, pools
            await post(app, body, token)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests):
            await post(app, body, token)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"{which}: {cpu / requests * 1000:.3f} ms CPU and {wall / requests * 1000:.3f} ms "
            f"wall per request ({requests} requests, one at a time)"
        )
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(requests):
                await post(app, body, token)
            profiler.disable()
            pstats.Stats(profiler).sort_stats(profile).print_stats(40)


async def main(which: str, requests: int, profile: str | None) -> None:
    tag = f"{os.getpid()}_inprocess"
    database, namespace = f"kiln_bench_{tag}", f"kiln-bench-{tag}"
    await create_database(database)
    os.environ.update(
        DATABASE_URL=pg_dsn(database),
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=namespace,
        JWT_SECRET=E2E_JWT_SECRET,  # production-like settings must bring their own
        API_KEY_PEPPER=E2E_API_KEY_PEPPER,
        LOCAL_PROVIDER_DELAY="0",
        LOG_LEVEL="WARNING",
        REQUEUE_AFTER_SECONDS="3600",
        RATE_LIMIT_PER_USER="1000000000",
        RATE_LIMIT_PER_IP="1000000000",
        QUERY_RATE_LIMIT_PER_USER="1000000000",
        QUERY_RATE_LIMIT_PER_IP="1000000000",
    )
    try:
        migrate = [sys.executable, "-m", "tortoise", "migrate"]
        await asyncio.to_thread(subprocess.run, migrate, check=True, capture_output=True)
        await measure(which, requests, profile)
    finally:
        await drop_database(database)
        await delete_redis_namespace(namespace)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("which", choices=["accept", "read"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", choices=["tottime", "cumulative"])
    args = parser.parse_args()
    uvloop.run(main(args.which, args.requests, args.profile))
