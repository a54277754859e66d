"""The GraphQL endpoint: Strawberry's ASGI view with Kiln's schema, context, the fast path's
prepared operations (fastpath/prepared.py) when FAST_PATH_ENABLED, socket transport,
persisted queries (web/persisted_queries.py) and subscriptions over HTTP
(web/http_streams.py)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

import runtime
from fastpath import PreparedOperations
from observability.graphql import GraphQLObservability, bind_caller, record_operation
from schema.build import build_schema
from schema.context import Context
from schema.graphiql import graphiql_html
from schema.loaders import Loaders
from schema.security import (
    InputLimits,
    OperationRateLimit,
    ResultBudget,
    check_operation_inputs,
    check_result_budget,
    spend_rate_limit,
)
from services.persisted_queries import Documents, MemoryDocuments, RedisDocuments
from services.rate_limits import Counters, MemoryCounters, RedisCounters
from settings import Settings
from web.http_streams import EventStream, MultipartSubscriptions, requested_stream
from web.persisted_queries import (
    Persisted,
    PersistedQueryNotFound,
    document_text,
    not_found_response,
)
from web.socket_credentials import admit
from web.websocket import LimitedTransportWS

# What a subscription sent as a plain request is told.
SUBSCRIPTION_NEEDS_A_STREAM = (
    "A subscription over HTTP needs a streaming answer: send it with "
    '`Accept: multipart/mixed;subscriptionSpec="1.0", application/json` (multipart '
    "subscriptions, as Apollo Client does) or `Accept: text/event-stream` (GraphQL over "
    "SSE), or over a WebSocket (graphql-transport-ws)."
)
# GET answers that may not be kept by browsers or shared caches.
PRIVATE = "private, no-store"


def observed_schema(settings: Settings | None = None) -> Any:
    """The schema, measured: operation counts, latency and live subscriptions."""
    schema = build_schema(settings)
    schema.extensions = (*schema.extensions, GraphQLObservability)
    return schema


class KilnGraphQL(GraphQL):
    graphql_transport_ws_handler_class = LimitedTransportWS  # type: ignore[assignment]
    # Subscriptions over HTTP, chosen only when a stream is the client's first choice.
    stream_transport_classes_by_protocol = {
        MULTIPART_SUBSCRIPTION_PROTOCOL: MultipartSubscriptions,
        GRAPHQL_SSE_PROTOCOL: EventStream,
    }

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            observed_schema(settings),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            # Mutations are never accepted over GET (Strawberry allows only queries there).
            allow_queries_via_get=True,
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
                GRAPHQL_SSE_PROTOCOL,
            ),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            # Pages on the CORS origins may open sockets too; other origins are refused (403),
            # same-origin pages and clients sending no Origin (not browsers) always connect.
            allowed_origins=settings.cors_origins,
        )
        self.settings = settings
        assert isinstance(self.schema, Schema)
        self.prepared: PreparedOperations | None = None
        if settings.fast_path_enabled:
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
        self._documents: tuple[Any, Documents] | None = None

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

    def persisted_documents(self) -> Documents:
        """The documents of persisted queries: shared through Redis when the runtime has it,
        else kept in this process. Rebuilt if the runtime was restarted."""
        redis = getattr(runtime.current(), "redis", None)
        if self._documents is None or self._documents[0] is not redis:
            settings = self.settings
            made: Documents = (
                RedisDocuments(
                    redis,
                    prefix=f"{settings.redis_namespace}:apq",
                    max_entries=settings.persisted_query_max_entries,
                    max_bytes=settings.persisted_query_max_bytes,
                    local_entries=min(
                        settings.graphql_cache_size, settings.persisted_query_max_entries
                    ),
                )
                if redis is not None
                else MemoryDocuments(
                    settings.persisted_query_max_entries, settings.persisted_query_max_bytes
                )
            )
            self._documents = (redis, made)
        return self._documents[1]

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
        except PersistedQueryNotFound:
            response = not_found_response()
        except HTTPException as error:
            # Strawberry answers unreadable requests in plain text; keep the GraphQL shape.
            response = JSONResponse(
                {"errors": [{"message": error.reason, "extensions": {"code": "BAD_USER_INPUT"}}]},
                status_code=error.status_code,
            )
        if request.method == "GET":
            self._set_cache_control(request, response)
        await response(scope, receive, send)

    def _set_cache_control(self, request: Request, response: Response) -> None:
        """GET answers are private and never stored, except one that is the same for every
        caller and names its document by hash: a persisted query, sent without credentials,
        answered without errors may be kept by browsers and CDNs for
        PERSISTED_QUERY_CACHE_SECONDS. Shared caches key it by Authorization (and Accept), so
        they never answer a caller who sends credentials with it."""
        max_age = self.settings.persisted_query_cache_seconds
        public = (
            max_age > 0
            and "authorization" not in request.headers
            and response.status_code == 200
            and not isinstance(response, StreamingResponse)
            and response.media_type == "application/json"
            and _names_persisted(request.query_params)
            # Only these few answers are read again.
            and "errors" not in orjson.loads(response.body)
        )
        if public:
            response.headers["Cache-Control"] = f"public, max-age={max_age}"
            response.headers["Vary"] = "Accept, Authorization"
        elif isinstance(response, StreamingResponse):
            # A proxy that transforms (compresses) a stream may hold its events back.
            response.headers["Cache-Control"] = f"{PRIVATE}, no-transform"
        else:
            response.headers["Cache-Control"] = PRIVATE

    async def _run_prepared(self, request: Request) -> Response | None:
        """A query or mutation (POST) or query (GET) whose document was seen before, sent as
        its text or named by the hash of a persisted query, run as a prepared operation
        (fastpath/prepared.py); None for Strawberry to handle (the body read here stays with
        the request for it), always when the fast path is off. A hash this server does not
        know raises PersistedQueryNotFound."""
        prepared_operations = self.prepared
        if (
            prepared_operations is None
            or prepared_operations.hooks is None
            or requested_stream(request.headers.get("accept", ""))
        ):
            return None
        if request.method == "GET":
            data = _get_operation(request.query_params)
        else:
            if not request.headers.get("content-type", "").startswith("application/json"):
                return None
            try:
                data = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                return None
        if not isinstance(data, dict):
            return None
        query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
        extensions = data.get("extensions")
        if not isinstance(extensions, dict | None):
            return None
        if extensions:
            query = await document_text(self.persisted_documents(), query, extensions)
        if (
            not isinstance(query, str)
            or not isinstance(variables, dict | None)
            or not isinstance(name, str | None)
        ):
            return None
        prepared = prepared_operations.get(query, name)
        if prepared is None or (
            request.method == "GET" and prepared.operation_type is not OperationType.QUERY
        ):
            return None  # Strawberry refuses a mutation over GET
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        execution = prepared_operations.execution(
            prepared, query, variables, name, context, extensions
        )
        started = time.perf_counter()
        try:
            result = await prepared_operations.execute(execution)
        finally:
            record_operation(execution, started)
        return self.create_response(await self.process_result(request, result), sub_response)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's, with the text of a persisted query filled in (web/persisted_queries);
        batches are refused before this."""
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and data.extensions:
            data.query = await document_text(
                self.persisted_documents(), data.query, data.extensions
            )
        return data

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted query is an operation, whatever the client accepts.
        return (
            super().should_render_graphql_ide(request)
            and request.query_params.get("extensions") is None
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, without subscriptions: a subscription answers only as a stream, which
        the client asks for (web/http_streams.py), and is otherwise the client's error (run as
        a query it would fail inside graphql-core, INTERNAL)."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        if not self.allow_queries_via_get and request_adapter.method == "GET":
            allowed -= {OperationType.QUERY}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason()) from error
        except InvalidOperationTypeError as error:
            if error.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTION_NEEDS_A_STREAM) from error
            reason = error.as_http_error_reason(request_adapter.method)
            raise HTTPException(400, reason) from error
        except MissingQueryError as error:
            raise HTTPException(400, "No GraphQL query found in the request") from error

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
        """Sockets authenticate in connection_init (`authorization`, in any letter case, or
        under `headers`); a missing or refused credential closes the socket with 4403 and a
        reason naming what was wrong (web/socket_credentials.py)."""
        await admit(context)
        return None


def _get_operation(params: QueryParams) -> dict[str, Any] | None:
    """A GET's operation as a POST body has it (variables and extensions are JSON); None when
    either does not parse."""
    data: dict[str, Any] = dict(params)
    for key in ("variables", "extensions"):
        if data.get(key):
            try:
                data[key] = orjson.loads(data[key])
            except orjson.JSONDecodeError:
                return None
    return data


def _names_persisted(params: QueryParams) -> bool:
    operation = _get_operation(params)
    try:
        return operation is not None and Persisted.named_by(operation.get("extensions")) is not None
    except HTTPException:
        return False
