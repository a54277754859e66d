"""Kiln's ASGI app. `uv run server.py` starts it embedded on http://127.0.0.1:8000.

Production: `uv run uvicorn --factory server:create_app --host 0.0.0.0 --port 8000
--ws-per-message-deflate false` (see WS_UVICORN_OPTIONS)
with DATABASE_URL and REDIS_URL set, and workers started with `uv run dramatiq tasks`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute

import runtime
from observability import logs, metrics
from settings import Settings, get_settings, production_problems
from web.embedded_worker import start_embedded_worker, stop_embedded_worker
from web.graphql_app import KilnGraphQL
from web.health import healthz, metrics_endpoint, readyz
from web.media import MediaFiles
from web.middleware import BodyLimit, RequestId, SocketGauge
from web.schema_file import schema_file
from web.webhooks import payment_webhook, provider_webhook

log = logging.getLogger("kiln.server")


# How uvicorn must run Kiln's sockets (`uv run server.py` passes these; production's uvicorn
# command line gives `--ws-per-message-deflate false`, see README). Per-message deflate keeps a
# zlib compressor and decompressor per connection, about half of the API's memory per idle
# socket, to shrink messages of a few hundred bytes (bench/RESULTS.md, fan-out).
WS_UVICORN_OPTIONS: dict[str, Any] = {"ws_per_message_deflate": False}


def _tune_garbage_collection() -> None:
    """A process holding thousands of sockets has millions of long-lived objects, and each
    full collection walks all of them while the event loop stands still (a 2.7 s pause at
    10,000 subscribers in the fan-out benchmark). Everything alive after start-up is frozen
    out of collection, and full collections come far less often; Kiln's request objects die
    young, which the young generations still catch."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    if settings.environment == "production" and (problems := production_problems(settings)):
        raise SystemExit("Refusing to start in production: " + "; ".join(problems) + ".")
    logs.setup_logging(level=settings.log_level, fmt=settings.log_format)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await runtime.start_runtime(settings, migrate=settings.migrate_on_start)
        import tasks  # noqa: F401  (declares the actors on the configured broker)

        worker = None
        if settings.embedded:
            worker = app.state.embedded_worker = start_embedded_worker(
                settings.embedded_worker_threads
            )
            rt.start_sweeper()
        _tune_garbage_collection()
        log.info("Kiln ready (%s mode)", "embedded" if settings.embedded else "production")
        try:
            yield
        finally:
            if worker is not None:
                await stop_embedded_worker(worker)
            await runtime.stop_runtime()
            metrics.process_exited()

    settings.media_dir.mkdir(parents=True, exist_ok=True)
    graphql = KilnGraphQL(settings)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/graphql/schema.graphql", schema_file(graphql.schema, settings)),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint(settings)),
            Route("/webhooks/payments", payment_webhook, methods=["POST"]),
            Route("/webhooks/providers/{provider}", provider_webhook, methods=["POST"]),
            Mount("/media", MediaFiles(directory=settings.media_dir, check_dir=False)),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(SocketGauge)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Browsers may call from these origins only; bearer tokens, not cookies, so no
        # credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    app.add_middleware(RequestId)
    return app


def main() -> None:
    import uvicorn

    settings = get_settings()
    # log_config=None: uvicorn keeps the logging that create_app set up (JSON lines).
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        **WS_UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
