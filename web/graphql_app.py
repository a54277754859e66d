"""The GraphQL endpoint: Strawberry's ASGI view with Kiln's schema, context, prepared
operations (schema/prepared.py) and socket transport."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

import runtime
from observability.graphql import GraphQLObservability, bind_caller, record_operation
from schema.build import build_schema
from schema.context import Context
from schema.graphiql import graphiql_html
from schema.loaders import Loaders
from schema.prepared import PreparedOperations
from schema.security import (
    InputLimits,
    OperationRateLimit,
    ResultBudget,
    check_operation_inputs,
    check_result_budget,
    spend_rate_limit,
)
from services.errors import DomainError
from services.rate_limits import Counters, MemoryCounters, RedisCounters
from settings import Settings
from web.websocket import LimitedTransportWS


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
                ResultBudget: check_result_budget,
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

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses what json.loads takes but nothing after it can: nesting past 1,024
        # levels (json.loads raised RecursionError on 200 KB of nested arrays, a bare 500) and
        # unpaired surrogates. Its JSONDecodeError is json's, answered 400 by Strawberry.
        return orjson.loads(data)

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
