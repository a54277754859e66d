"""The fast path's part of the graphql-transport-ws transport: subscriptions handed off.

A subscription resolver may hand the rest of its subscription over (`hand_off`, a context
variable the resolvers define) as a `Followed` once its first message is out, and return:
the resolver's generator, Strawberry's stream with its extensions, graphql-core's executor
and the parsed operation are released, rather than kept for as long as the subscription
lasts (hours, for an idle subscriber). This handler then delivers the changes itself, each
through the subscription's projection (fastpath/projection.py) encoded once for every local
subscriber with the same selection, or, for an event the projection cannot reproduce,
executed by graphql-core as the stream would have executed it.

With the fast path off (`fast_path_enabled()` False) nothing is offered: resolvers keep
their stream and Strawberry executes every event.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol, TypeVar

import orjson
from graphql import execute, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from fastpath.execution import executor_kwargs
from fastpath.internals import (
    BaseGraphQLTransportWSHandler,
    Operation,
    graphql_schema,
    process_errors,
)
from fastpath.projection import DirectSend

ContextT = TypeVar("ContextT")
# Sends one `next` message for a root value through graphql-core's execution (errors and all).
ExecuteEvent = Callable[[Any], Awaitable[None]]


class Followed(Protocol):
    """The rest of a subscription, handed over by its resolver."""

    async def run(self, send: DirectSend, execute: ExecuteEvent) -> None: ...

    async def close(self) -> None: ...


HandOff = Callable[[Any], None]


class HandOffTransport(BaseGraphQLTransportWSHandler[ContextT, None]):
    """Strawberry's graphql-transport-ws handler that takes subscriptions handed off to it.
    Subclasses name the context variable the resolvers look for (`hand_off`), and say
    whether the fast path is on (`fast_path_enabled`)."""

    hand_off: ClassVar[ContextVar[HandOff | None]]
    # True once nothing more may be sent (the subclass closes the socket).
    ended = False

    def fast_path_enabled(self) -> bool:
        return True

    async def follow(self, operation: Operation[ContextT, None], followed: Followed) -> None:
        """Delivers a handed-off subscription until it ends (subclasses measure it)."""
        await followed.run(
            lambda payload: self._send_encoded(operation, payload),
            lambda root: self._execute_event(operation, root),
        )

    async def _send_result_stream(
        self, operation: Operation[ContextT, None], result_source: Any
    ) -> None:
        """Runs the operation's stream; a subscription whose resolver handed the rest of it
        over is then delivered here, after the stream and everything it held (extensions,
        graphql-core's executor) are gone. Strawberry sends `complete` when this returns, as
        when a resolver ends."""
        handover = _Handover()
        if self.fast_path_enabled() and getattr(self.websocket, "ws", None) is not None:
            self.hand_off.set(handover.take)
        try:
            await super()._send_result_stream(operation, result_source)
            # The stream is exhausted: its frames, and what they referenced, are freed.
            del result_source
            if handover.followed is not None:
                await self.follow(operation, handover.followed)
        finally:
            if handover.followed is not None:
                await handover.followed.close()

    async def _execute_event(self, operation: Operation[ContextT, None], root: Any) -> None:
        result = await execute_event(
            self.schema,
            operation.query,
            operation.variables,
            operation.operation_name,
            self.context,
            root,
        )
        await operation.send_next(result)

    async def _send_encoded(self, operation: Operation[ContextT, None], payload: bytes) -> None:
        if operation.completed or self.ended:
            return
        frame = b'{"id":%b,"type":"next","payload":%b}' % (orjson.dumps(operation.id), payload)
        # A socket that went away ends the operation from the receiving side (the handler
        # cancels it); failing here would only report the client's departure as an error.
        with contextlib.suppress(WebSocketDisconnect):
            await self.websocket.ws.send_text(frame.decode())  # type: ignore[attr-defined]


async def execute_event(
    schema: Any,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: Any,
    root: Any,
) -> ExecutionResult:
    """An event the projection cannot reproduce, executed as the subscription's stream
    executes every event (graphql-core with the event as root value, the same document,
    variables and context), its errors through the schema's error processing so they carry
    extensions.code. Extension hooks are not run again: a stream runs them once per
    operation, not per event."""
    result = execute(
        graphql_schema(schema),
        parse(query),
        root_value=root,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
        **executor_kwargs(getattr(schema, "execution_context_class", None)),
    )
    if inspect.isawaitable(result):
        result = await result
    if result.errors:
        process_errors(
            schema,
            result.errors,
            ExecutionContext(
                query=query,
                schema=schema,
                allowed_operations=(OperationType.SUBSCRIPTION,),
                context=context,
                variables=variables,
                provided_operation_name=operation_name,
            ),
        )
    return ExecutionResult(data=result.data, errors=result.errors)


class _Handover:
    """Where a subscription resolver leaves the rest of its subscription for the transport."""

    __slots__ = ("followed",)

    def __init__(self) -> None:
        self.followed: Followed | None = None

    def take(self, followed: Followed) -> None:
        self.followed = followed
