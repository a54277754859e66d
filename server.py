"""Kiln's ASGI app. `uv run server.py` starts it embedded on http://127.0.0.1:8000.

Production: the README's `uv run uvicorn --factory server:create_app ...` command, whose
options are `uvicorn_options` below, with DATABASE_URL and REDIS_URL set, and workers started
with `uv run dramatiq tasks`.
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
from starlette.staticfiles import StaticFiles

import runtime
from observability import gc_pauses, logs, metrics
from schema.graphiql import GRAPHIQL_ASSETS_DIR, GRAPHIQL_ASSETS_PATH
from settings import Settings, get_settings, refuse_to_start
from web.embedded_worker import start_embedded_worker, stop_embedded_worker
from web.graphql_app import KilnGraphQL
from web.head_limits import HeadLimits
from web.health import healthz, metrics_endpoint, readyz
from web.http_protocol import KilnHttpProtocol
from web.media import MediaFiles
from web.middleware import BodyLimit, RequestId, SocketGauge
from web.proxy import add_trusted_proxy_headers
from web.schema_file import schema_file
from web.webhooks import payment_webhook, provider_webhook

log = logging.getLogger("kiln.server")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn must run Kiln: `uv run server.py` passes these, and the README's production
    command gives the same as flags (tests/test_server_options.py holds the two together).
    - http: uvicorn's httptools protocol with a deadline and a size bound on request heads
      (web/http_protocol.py).
    - proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 (its default,
      read before the app exists); Kiln believes it only from TRUSTED_PROXIES (web/proxy.py).
    - ws_max_size: a WebSocket message is capped like an HTTP body (MAX_BODY_BYTES), not at
      uvicorn's 16 MiB.
    - ws_per_message_deflate off: it keeps a zlib compressor and decompressor per connection,
      about half of the API's memory per idle socket, to shrink messages of a few hundred
      bytes (bench/RESULTS.md, fan-out)."""
    return {
        "http": KilnHttpProtocol.configured(settings),
        "proxy_headers": False,
        "ws_max_size": settings.max_body_bytes,
        "ws_per_message_deflate": False,
    }


# Request headers a page on an allowed origin may send (CORS preflight).
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "apollographql-client-name",
    "apollographql-client-version",
    "traceparent",
    "tracestate",
]


def _tune_garbage_collection() -> None:
    """A process holding thousands of sockets has millions of long-lived objects, and each
    full collection walks all of them while the event loop stands still (a 2.7 s pause at
    10,000 subscribers in the fan-out benchmark). Everything alive after start-up is frozen
    out of collection, and full collections come far less often. That is safe only because a
    request leaves no reference cycle behind (tests/web/test_request_cycles.py): its objects
    are freed by reference counting as it ends, so the old generation grows only with what
    really lives on (sockets, caches), not with garbage waiting for a full collection (which
    then freed a million objects in a 1.5 s pause: bench/RESULTS.md, memory). Every pause is
    measured (observability/gc_pauses.py)."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)
    gc_pauses.install()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    refuse_to_start(settings, "API")  # public, missing or weak secrets
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
            gc_pauses.uninstall()
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
    if settings.graphiql_enabled:
        # GraphiQL's scripts and styles, served by Kiln itself: the page needs no CDN.
        app.mount(GRAPHIQL_ASSETS_PATH, StaticFiles(directory=GRAPHIQL_ASSETS_DIR))
    app.add_middleware(SocketGauge)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # Browsers may call from these origins only (their WebSocket upgrades follow the same
        # list: web/graphql_app.py); bearer tokens, not cookies, so no credentials mode. The
        # headers are those browser GraphQL clients send (Apollo's client name and version,
        # W3C trace context).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=[
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    app.add_middleware(RequestId)
    # Outermost: the real client for everything inside, and over-large heads refused first.
    add_trusted_proxy_headers(app, settings)
    app.add_middleware(
        HeadLimits, max_bytes=settings.max_header_bytes, max_count=settings.max_headers
    )
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
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
