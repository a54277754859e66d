"""The graphql-transport-ws transport: Strawberry's handler with Kiln's per-socket cap, the
fast path's hand-off of long-lived subscriptions (fastpath/websocket.py, when
FAST_PATH_ENABLED), and the socket's credential: authenticated once per operation, never once
per socket, and watched while the socket is open (web/socket_credentials.py)."""

from __future__ import annotations

import contextlib
from typing import Any

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from fastpath import Followed, HandOffTransport
from fastpath.internals import Operation
from models.user import Role
from observability import metrics
from resolvers.errors import code_of
from resolvers.subscriptions import HAND_OFF
from schema.context import Context, OperationAuth, begin_operation
from schema.permissions import ADMINS_ONLY
from services.errors import DomainError, Forbidden, Unauthenticated
from web.socket_credentials import SocketCredentials, SocketRefused, close_reason, watcher_for


class LimitedTransportWS(HandOffTransport[Context]):
    """Strawberry's handler answers a subscription over the per-socket cap with a bare error;
    ours gives it a contract code, like every other GraphQL error. A socket whose credential
    ends is closed with 4403 and the reason; an admin-only operation of a caller who is no
    longer an admin ends with FORBIDDEN."""

    hand_off = HAND_OFF

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
        operation = self.operations.get(message["id"])
        if operation is not None and operation.task is not None:
            operation.task.add_done_callback(lambda _: self._forget_task(operation))

    def _forget_task(self, operation: Operation[Context, None]) -> None:
        """Once an operation's task is done and the operation is no longer registered,
        nothing needs the task through the Operation, which the task's context (DIRECT_SEND's
        lambda) and its exception's frames hold: left, a reference cycle per subscription,
        kept with the socket's objects until a full collection (tests/web/
        test_request_cycles.py)."""
        if self.operations.get(operation.id) is not operation:
            operation.task = None

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
        caches nothing across operations). An operation refused for its credential closes
        the socket once its answer is out: the credential is the socket's, and will not work
        again."""
        auth = begin_operation()
        self._operation_auth[operation.id] = auth
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

    def fast_path_enabled(self) -> bool:
        return bool(self.context.settings.fast_path_enabled)

    async def follow(self, operation: Operation[Context, None], followed: Followed) -> None:
        # Strawberry counted the subscription as ended when its stream ended; it is still live.
        metrics.ACTIVE_SUBSCRIPTIONS.inc()
        try:
            await super().follow(operation, followed)
        finally:
            metrics.ACTIVE_SUBSCRIPTIONS.dec()
