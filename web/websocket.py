"""The graphql-transport-ws transport: Strawberry's handler with Kiln's per-socket cap, the
hand-off of long-lived subscriptions to the transport (resolvers/subscriptions.py), and the
socket's credential: authenticated once per operation, never once per socket, and watched
while the socket is open (web/socket_credentials.py)."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import orjson
from graphql import GraphQLError, execute, parse
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)
from strawberry.types import ExecutionContext as StrawberryExecutionContext
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from models.user import Role
from observability import metrics
from resolvers.errors import code_of
from resolvers.projection import DIRECT_SEND
from resolvers.subscriptions import HAND_OFF, Follow
from schema.context import Context, OperationAuth, begin_operation
from schema.permissions import ADMINS_ONLY
from services.errors import DomainError, Forbidden, Unauthenticated
from web.socket_credentials import SocketCredentials, SocketRefused, close_reason, watcher_for


class LimitedTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's handler answers a subscription over the per-socket cap with a bare error;
    ours gives it a contract code, like every other GraphQL error. A socket whose credential
    ends is closed with 4403 and the reason; an admin-only operation of a caller who is no
    longer an admin ends with FORBIDDEN."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Closed for its credential, or gone: nothing more is read or sent.
        self.ended = False
        self._watcher: SocketCredentials | None = None
        # The authentication of each running operation (schema/context.py).
        self._operation_auth: dict[str, OperationAuth] = {}

    async def handle_message(self, message: Message) -> None:
        if not self.ended:
            await super().handle_message(message)

    async def send_message(self, message: Message) -> None:
        if not self.ended:
            await super().send_message(message)

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
        try:
            # Strawberry calls the view's on_ws_connect, which admits the socket or refuses it
            # (web/socket_credentials.py); a refusal comes back here, with its reason.
            await super().handle_connection_init(message)
        except SocketRefused as refused:
            await self.websocket.close(code=4403, reason=refused.reason)
            return
        # The 4408 timer's job is done: without this every new socket keeps a sleeping task
        # for WS_INIT_TIMEOUT_SECONDS.
        timer = self.connection_init_timeout_task
        if self.connection_init_received and timer is not None and not timer.done():
            timer.cancel()
        caller = self.context.socket_caller
        if self.connection_acknowledged and caller is not None and self._watcher is None:
            self._watcher = watcher_for(self.context.settings.credential_check_interval_seconds)
            self._watcher.watch(self, caller.credential, caller.user.role)

    async def shutdown(self) -> None:
        self.ended = True
        if self._watcher is not None:
            self._watcher.forget(self)
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Authenticates the operation afresh, in its own task (the socket's one context
        caches nothing across operations). Lets the operation's subscription resolvers send
        events whose payload they encoded themselves (resolvers/projection.py), in order with
        everything else the operation sends, since they run in this same task. An operation
        refused for its credential closes the socket once its answer is out: the credential
        is the socket's, and will not work again."""
        auth = begin_operation()
        self._operation_auth[operation.id] = auth
        if getattr(self.websocket, "ws", None) is not None:
            DIRECT_SEND.set(lambda payload: self._send_encoded(operation, payload))
        try:
            await super().run_operation(operation)
        finally:
            if self._operation_auth.get(operation.id) is auth:
                del self._operation_auth[operation.id]
        if auth.refused is not None and self._watcher is not None:
            await self.credential_ended(auth.refused)

    async def credential_ended(self, refused: Unauthenticated) -> None:
        """Closes the socket with 4403 and the reason. Its operations are cancelled first, so
        none sends after the close; whatever the client still sends is dropped."""
        if self.ended:
            return
        self.ended = True
        if self._watcher is not None:
            self._watcher.forget(self)
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        # The client may have gone meanwhile: then there is nothing left to close.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, WebSocketDisconnected):
            await self.websocket.close(code=4403, reason=close_reason(refused))

    async def role_changed(self, role: Role) -> None:
        """Operations that needed the admin role end with FORBIDDEN when it goes."""
        if role is Role.ADMIN:
            return
        for operation_id, auth in list(self._operation_auth.items()):
            if auth.needs_admin:
                await self._end_operation(operation_id, Forbidden(ADMINS_ONLY))

    async def _end_operation(self, operation_id: str, error: DomainError) -> None:
        """Ends a running operation with the protocol's `error` message, as it is answered when
        it is refused at its start: the operation is over (graphql-transport-ws sends no
        `complete` after an `error`), and clients report it as the operation's failure rather
        than as an end they might resubscribe after."""
        operation = self.operations.get(operation_id)
        if operation is None or operation.completed:
            return
        formatted = GraphQLError(error.message, extensions={"code": code_of(error)}).formatted
        # Marks the operation completed before sending: nothing else of it goes out.
        await operation.send_operation_message(
            {"id": operation.id, "type": "error", "payload": [formatted]}
        )
        if operation.task is not None:
            operation.task.cancel()

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
        if operation.completed or self.ended:
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
