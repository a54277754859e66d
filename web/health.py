"""Operational endpoints: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import dramatiq
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from tortoise import connections

import runtime
from observability import gc_pauses, metrics
from services.outages import RETRY_AFTER_SECONDS
from services.stats import queue_stats
from settings import Settings
from web.embedded_worker import embedded_worker_alive

log = logging.getLogger("kiln.health")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Ready when the database, Redis and the broker answer; otherwise 503 with the code
    UNAVAILABLE (as GraphQL answers meanwhile) and the checks naming what does not."""
    rt = runtime.current()
    checks: dict[str, str] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            checks[name] = "ok"
        except Exception as error:
            checks[name] = f"failing: {type(error).__name__}"

    async def database() -> None:
        await connections.get("default").execute_query("SELECT 1")

    async def broker() -> None:
        client = getattr(dramatiq.get_broker(), "client", None)
        if client is not None:
            await asyncio.to_thread(client.ping)
        elif not embedded_worker_alive(request):
            raise RuntimeError("embedded worker is not running")

    await check("database", database)
    if rt.redis is not None:
        await check("redis", rt.redis.ping)
    await check("broker", broker)
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"ready": True, "checks": checks})
    return JSONResponse(
        {
            "ready": False,
            "code": "UNAVAILABLE",
            "retryAfter": RETRY_AFTER_SECONDS,
            "checks": checks,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def metrics_endpoint(settings: Settings) -> Any:
    """GET /metrics in Prometheus text format. Queue depth is read from the database at scrape
    time; everything else is counted as it happens (summed over processes in multiprocess
    mode). Guarded by METRICS_TOKEN when set; without one, open when embedded and closed when
    production-like unless METRICS_PUBLIC opens it."""
    expected = f"Bearer {settings.metrics_token}".encode() if settings.metrics_token else None
    closed = expected is None and settings.production_like and not settings.metrics_public

    async def endpoint(request: Request) -> Response:
        if closed or (
            expected is not None
            and not hmac.compare_digest(request.headers.get("authorization", "").encode(), expected)
        ):
            return PlainTextResponse("metrics token required", status_code=401)
        extra = []
        try:
            queue = await asyncio.wait_for(queue_stats(), timeout=2.0)
            extra = [
                metrics.gauge(
                    "kiln_queue_depth",
                    "Generations waiting or running, by status.",
                    ["status"],
                    {
                        ("QUEUED",): queue.queued,
                        ("PROCESSING",): queue.processing,
                        ("AWAITING_APPROVAL",): queue.awaiting_approval,
                    },
                ),
                metrics.gauge(
                    "kiln_queue_oldest_seconds",
                    "Age of the oldest QUEUED generation (0 when none).",
                    [],
                    {(): queue.oldest_queued_seconds or 0.0},
                ),
            ]
        except Exception:
            # A scrape must answer even when the database does not: the counters still help.
            log.warning("queue depth unavailable for /metrics", exc_info=True)
        gc_pauses.drain()  # the pauses since the last drain, so that this answer counts them
        return Response(metrics.render(extra), media_type=metrics.CONTENT_TYPE_LATEST)

    return endpoint
