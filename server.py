"""Kiln's ASGI app. `uv run server.py` starts it embedded on http://127.0.0.1:8000.

Production: `uv run uvicorn --factory server:create_app --host 0.0.0.0 --port 8000
--ws-per-message-deflate false` (see WS_UVICORN_OPTIONS)
with DATABASE_URL and REDIS_URL set, and workers started with `uv run dramatiq tasks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import dramatiq
import orjson
from cross_web import HTTPException
from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from graphql import execute, parse
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types import ExecutionContext as StrawberryExecutionContext
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from tortoise import connections

import runtime
from models.error_event import ErrorCategory, Severity
from observability import logs, metrics
from observability.graphql import GraphQLObservability, bind_caller, record_operation
from providers.base import ProviderError
from resolvers.projection import DIRECT_SEND
from resolvers.subscriptions import HAND_OFF, Follow
from schema.build import build_schema
from schema.context import Context
from schema.graphiql import graphiql_html
from schema.loaders import Loaders
from schema.prepared import PreparedOperations
from schema.security import (
    InputLimits,
    OperationRateLimit,
    check_operation_inputs,
    spend_rate_limit,
)
from services import runner
from services.error_events import Occurrence, record
from services.errors import DomainError
from services.payments import WebhookRejected, handle_payment_webhook
from services.rate_limits import Counters, MemoryCounters, RedisCounters
from services.stats import queue_stats
from settings import Settings, get_settings, production_problems

log = logging.getLogger("kiln.server")


class RequestId:
    """Gives every HTTP request and socket an id (or keeps the caller's X-Request-ID) and
    returns it in the X-Request-ID header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given[:64] if given.isprintable() and given else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Any) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # Every log line written while handling it carries the id.
        with logs.bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)


class SocketGauge:
    """Counts open WebSocket connections (kiln_websocket_connections)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        metrics.WEBSOCKET_CONNECTIONS.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            metrics.WEBSOCKET_CONNECTIONS.dec()


class BodyLimit:
    """Refuses HTTP request bodies over `max_bytes` with 413, by Content-Length when given
    and by counting the bytes as they arrive when not (chunked uploads)."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyLimit._TooLarge()
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyLimit._TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "errors": [
                    {
                        "message": f"Request bodies are limited to {self.max_bytes} bytes.",
                        "extensions": {"code": "BAD_USER_INPUT"},
                    }
                ]
            },
            status_code=413,
        )
        await response(scope, receive, send)


# How uvicorn must run Kiln's sockets (`uv run server.py` passes these; production's uvicorn
# command line gives `--ws-per-message-deflate false`, see README). Per-message deflate keeps a
# zlib compressor and decompressor per connection, about half of the API's memory per idle
# socket, to shrink messages of a few hundred bytes (bench/RESULTS.md, fan-out).
WS_UVICORN_OPTIONS: dict[str, Any] = {"ws_per_message_deflate": False}


class LimitedTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's handler answers a subscription over the per-socket cap with a bare error;
    ours gives it a contract code, like every other GraphQL error."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        cap = self.max_subscriptions_per_connection
        if (
            cap is not None
            and self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= cap
        ):
            await self.send_message(
                {
                    "id": message["id"],
                    "type": "error",
                    "payload": [
                        {
                            "message": f"At most {cap} operations at once on one connection.",
                            "extensions": {"code": "RATE_LIMITED", "retryAfter": 1},
                        }
                    ],
                }
            )
            return
        await super().handle_subscribe(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        # The 4408 timer's job is done: without this every new socket keeps a sleeping task
        # for WS_INIT_TIMEOUT_SECONDS.
        timer = self.connection_init_timeout_task
        if self.connection_init_received and timer is not None and not timer.done():
            timer.cancel()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Lets the operation's subscription resolvers send events whose payload they encoded
        themselves (resolvers/projection.py), in order with everything else the operation
        sends, since they run in this same task."""
        if getattr(self.websocket, "ws", None) is not None:
            DIRECT_SEND.set(lambda payload: self._send_encoded(operation, payload))
        await super().run_operation(operation)

    async def _send_result_stream(
        self, operation: Operation[Context, None], result_source: Any
    ) -> None:
        """Runs the operation's stream; a subscription whose resolver handed the rest of it
        over (resolvers/subscriptions.py, HAND_OFF) is then delivered here, after the stream
        and everything it held (extensions, graphql-core's executor) are gone. Strawberry
        sends `complete` when this returns, as when a resolver ends."""
        handover = _Handover()
        if getattr(self.websocket, "ws", None) is not None:
            HAND_OFF.set(handover.take)
        try:
            await super()._send_result_stream(operation, result_source)
            # The stream is exhausted: its frames, and what they referenced, are freed.
            del result_source
            if handover.follow is not None:
                await self._follow(operation, handover.follow)
        finally:
            if handover.follow is not None:
                await handover.follow.close()

    async def _follow(self, operation: Operation[Context, None], follow: Follow) -> None:
        # Strawberry counted the subscription as ended when its stream ended; it is still live.
        metrics.ACTIVE_SUBSCRIPTIONS.inc()
        try:
            await follow.run(
                lambda payload: self._send_encoded(operation, payload),
                lambda root: self._execute_event(operation, root),
            )
        finally:
            metrics.ACTIVE_SUBSCRIPTIONS.dec()

    async def _execute_event(self, operation: Operation[Context, None], root: Any) -> None:
        """An event the projection cannot reproduce, executed as the subscription's stream
        executes every event (graphql-core with the event as root value, the same document,
        variables and context), its errors through the schema's error processing so they
        carry extensions.code. Extension hooks are not run again: a stream runs them once
        per operation, not per event."""
        schema: Any = self.schema
        result = execute(
            schema._schema,
            parse(operation.query),
            root_value=root,
            context_value=self.context,
            variable_values=operation.variables,
            operation_name=operation.operation_name,
            # As Strawberry passes it, whichever graphql-core this is.
            **execution_context_class_kwargs(schema.execution_context_class),
        )
        if inspect.isawaitable(result):
            result = await result
        if result.errors:
            schema._process_errors(
                result.errors,
                StrawberryExecutionContext(
                    query=operation.query,
                    schema=schema,
                    allowed_operations=(OperationType.SUBSCRIPTION,),
                    context=self.context,
                    variables=operation.variables,
                    provided_operation_name=operation.operation_name,
                ),
            )
        await operation.send_next(ExecutionResult(data=result.data, errors=result.errors))

    async def _send_encoded(self, operation: Operation[Context, None], payload: bytes) -> None:
        if operation.completed:
            return
        frame = b'{"id":%b,"type":"next","payload":%b}' % (orjson.dumps(operation.id), payload)
        # A socket that went away ends the operation from the receiving side (the handler
        # cancels it); failing here would only report the client's departure as an error.
        with contextlib.suppress(WebSocketDisconnect):
            await self.websocket.ws.send_text(frame.decode())  # type: ignore[attr-defined]


class _Handover:
    """Where a subscription resolver leaves the rest of its subscription for the transport."""

    __slots__ = ("follow",)

    def __init__(self) -> None:
        self.follow: Follow | None = None

    def take(self, follow: Follow) -> None:
        self.follow = follow


def observed_schema(settings: Settings | None = None) -> Any:
    """The schema, measured: operation counts, latency and live subscriptions."""
    schema = build_schema(settings)
    schema.extensions = (*schema.extensions, GraphQLObservability)
    return schema


class KilnGraphQL(GraphQL):
    graphql_transport_ws_handler_class = LimitedTransportWS  # type: ignore[assignment]

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            observed_schema(settings),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            # Mutations are never accepted over GET (Strawberry allows only queries there).
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self.settings = settings
        assert isinstance(self.schema, Schema)
        self.prepared = PreparedOperations.attach(
            self.schema,
            {
                InputLimits: check_operation_inputs,
                OperationRateLimit: spend_rate_limit,
                GraphQLObservability: bind_caller,
            },
            maxsize=settings.graphql_cache_size,
        )
        self._graphiql = graphiql_html()
        self._counters: tuple[Any, Counters] | None = None

    def counters(self) -> Counters:
        """Shared through Redis when the runtime has it (every API process agrees), else one
        in-memory set for this process. Rebuilt if the runtime was restarted."""
        redis = getattr(runtime.current(), "redis", None)
        if self._counters is None or self._counters[0] is not redis:
            made: Counters = (
                RedisCounters(redis, prefix=f"{self.settings.redis_namespace}:rate")
                if redis is not None
                else MemoryCounters()
            )
            self._counters = (redis, made)
        return self._counters[1]

    @property
    def graphql_ide_html(self) -> str:
        return self._graphiql

    def encode_json(self, data: object) -> str:
        # orjson is several times faster than json.dumps on result trees. A str, not bytes:
        # Strawberry would send bytes over a socket as binary frames, which
        # graphql-transport-ws clients refuse.
        return orjson.dumps(data).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive=receive)
        try:
            response = await self._run_prepared(request) or await self.run(request)
        except HTTPException as error:
            # Strawberry answers unreadable requests in plain text; keep the GraphQL shape.
            response = JSONResponse(
                {"errors": [{"message": error.reason, "extensions": {"code": "BAD_USER_INPUT"}}]},
                status_code=error.status_code,
            )
        await response(scope, receive, send)

    async def _run_prepared(self, request: Request) -> Response | None:
        """A JSON POST of a query or mutation whose document was seen before, run as a
        prepared operation (schema/prepared.py); None for Strawberry to handle (the body read
        here stays with the request for it)."""
        if request.method != "POST" or self.prepared.hooks is None:
            return None
        headers = request.headers
        accept = headers.get("accept", "")
        if (
            not headers.get("content-type", "").startswith("application/json")
            or "multipart" in accept
            or "text/event-stream" in accept
        ):
            return None
        try:
            data = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("extensions") is not None:
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        if (
            not isinstance(query, str)
            or not isinstance(variables, dict | None)
            or not isinstance(name, str | None)
        ):
            return None
        prepared = self.prepared.get(query, name)
        if prepared is None:
            return None
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        execution = self.prepared.execution(prepared, query, variables, name, context)
        started = time.perf_counter()
        try:
            result = await self.prepared.execute(execution)
        finally:
            record_operation(execution, started)
        return self.create_response(await self.process_result(request, result), sub_response)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        websocket = isinstance(request, WebSocket)
        return Context(
            request=request,
            response=response,
            settings=self.settings,
            catalogue=runtime.current().catalogue,
            providers=runtime.current().providers,
            request_id=request.scope.get("state", {}).get("request_id", uuid.uuid4().hex),
            # A socket's context lives as long as the socket: never cache rows across it.
            loaders=Loaders(cache=not websocket),
            counters=self.counters(),
        )

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        """Sockets authenticate in connection_init; a missing or bad token closes with 4403."""
        try:
            if await context.user() is None:
                raise ConnectionRejectionError({"message": "Missing authorization."})
        except DomainError as error:
            raise ConnectionRejectionError({"message": error.message}) from error
        return None


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Ready when the database, Redis and the broker answer; 503 naming what does not."""
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
        elif not _embedded_worker_alive(request):
            raise RuntimeError("embedded worker is not running")

    await check("database", database)
    if rt.redis is not None:
        await check("redis", rt.redis.ping)
    await check("broker", broker)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


async def payment_webhook(request: Request) -> Response:
    """Stripe-format payment events. 200 once handled (or already handled), 400 with the
    reason when the signature or body is wrong, so Stripe shows why."""
    body = await request.body()
    try:
        outcome = await handle_payment_webhook(
            body,
            request.headers.get("stripe-signature"),
            runtime.current().settings,
            request_id=request.scope.get("state", {}).get("request_id"),
        )
    except WebhookRejected as rejected:
        return JSONResponse({"error": rejected.reason}, status_code=400)
    return JSONResponse({"received": True, "event": outcome.event_id, "action": outcome.action})


def metrics_endpoint(settings: Settings) -> Any:
    """GET /metrics in Prometheus text format. Queue depth is read from the database at scrape
    time; everything else is counted as it happens (summed over processes in multiprocess
    mode). Guarded by METRICS_TOKEN when set."""

    async def endpoint(request: Request) -> Response:
        if settings.metrics_token and request.headers.get("authorization") != (
            f"Bearer {settings.metrics_token}"
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
        return Response(metrics.render(extra), media_type=metrics.CONTENT_TYPE_LATEST)

    return endpoint


async def provider_webhook(request: Request) -> Response:
    """Results pushed by queued providers (Replicate, fal). 200 once handled or when the job
    is no longer waited on; 400 with the reason when the signature or body is wrong."""
    rt = runtime.current()
    body = await request.body()
    try:
        handled = await runner.handle_webhook(
            request.path_params["provider"],
            request.headers,
            body,
            rt.catalogue,
            rt.providers,
            rt.store,
        )
    except ProviderError as rejected:
        await record(
            Occurrence(
                severity=Severity.WARNING,
                category=ErrorCategory.WEBHOOK,
                message=f"Provider webhook rejected: {rejected.message}",
                error_code="WEBHOOK_REJECTED",
                request_id=request.scope.get("state", {}).get("request_id"),
                endpoint=request.url.path,
            )
        )
        return JSONResponse({"error": rejected.message}, status_code=400)
    return JSONResponse({"received": True, "handled": handled})


def _embedded_worker_alive(request: Request) -> bool:
    worker = getattr(request.app.state, "embedded_worker", None)
    return worker is not None and any(t.is_alive() for t in worker.workers)


class _RunningLoop(EventLoopThread):
    """Lets Dramatiq's async actors run on the server's own event loop (embedded mode),
    where Tortoise's connections live."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.logger = log
        self.interrupt_check_ival = 0.1


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
            set_event_loop_thread(_RunningLoop(asyncio.get_running_loop()))
            worker = dramatiq.Worker(
                dramatiq.get_broker(), worker_threads=settings.embedded_worker_threads
            )
            worker.start()
            app.state.embedded_worker = worker
            rt.start_sweeper()
        _tune_garbage_collection()
        log.info("Kiln ready (%s mode)", "embedded" if settings.embedded else "production")
        try:
            yield
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.stop)
                set_event_loop_thread(None)
            await runtime.stop_runtime()
            metrics.process_exited()

    settings.media_dir.mkdir(parents=True, exist_ok=True)
    graphql = KilnGraphQL(settings)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint(settings)),
            Route("/webhooks/payments", payment_webhook, methods=["POST"]),
            Route("/webhooks/providers/{provider}", provider_webhook, methods=["POST"]),
            Mount("/media", StaticFiles(directory=settings.media_dir, check_dir=False)),
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
