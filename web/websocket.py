"""The graphql-transport-ws transport: Strawberry's handler with Kiln's per-socket cap, and
the hand-off of long-lived subscriptions to the transport (resolvers/subscriptions.py)."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import orjson
from graphql import execute, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.schema._graphql_core import execution_context_class_kwargs
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

from observability import metrics
from resolvers.projection import DIRECT_SEND
from resolvers.subscriptions import HAND_OFF, Follow
from schema.context import Context


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
