"""The typed per-request (or per-socket) Context.

The caller is authenticated once per operation: an HTTP request is one operation, with its own
Context; a socket's one Context serves every operation on it, so there the caller is kept per
operation (OPERATION_AUTH, set in each operation's task by web/websocket.py), never for the
socket's lifetime: a revoked key, an expired token or a lost role stops the next operation."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from models.user import User
from schema.loaders import Loaders
from services import auth
from services.auth import Caller
from services.catalogue import Catalogue
from services.errors import AuthFailure, Unauthenticated
from services.provider_routing.deps import ProviderDeps
from services.rate_limits import Counters, MemoryCounters
from settings import Settings

_UNSET: Any = object()


class OperationAuth:
    """One operation's caller, looked up on first use (or why it was refused), and whether the
    operation needs the admin role (a socket ends it when the role goes)."""

    __slots__ = ("caller", "looked_up", "needs_admin", "refused")

    def __init__(self) -> None:
        self.looked_up = False
        self.caller: Caller | None = None
        self.refused: Unauthenticated | None = None
        self.needs_admin = False


OPERATION_AUTH: ContextVar[OperationAuth | None] = ContextVar("kiln_operation_auth", default=None)


def begin_operation() -> OperationAuth:
    """Called at the start of a socket operation's own task: its caller is looked up afresh."""
    state = OperationAuth()
    OPERATION_AUTH.set(state)
    return state


def authorization_of(params: dict[str, Any]) -> str | None:
    """The `Authorization` value of a connection_init payload, whatever the letter case of its
    key, at the top or under `headers` (GraphiQL sends `Authorization`, some clients nest
    their headers). A value that is not a string is malformed."""
    for where in (params, params.get("headers")):
        if not isinstance(where, dict):
            continue
        value = where.get("authorization", _UNSET)
        if value is _UNSET:
            matches = (v for k, v in where.items() if str(k).lower() == "authorization")
            value = next(matches, _UNSET)
        if value is _UNSET:
            continue
        if not isinstance(value, str):
            raise Unauthenticated("Send 'Bearer <token>' as a string.", AuthFailure.MALFORMED)
        return value
    return None


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    settings: Settings
    catalogue: Catalogue
    providers: ProviderDeps
    request_id: str
    loaders: Loaders
    # Set by strawberry from the socket's connection_init payload.
    connection_params: dict[str, Any] | None = None
    # Who opened the socket (web/socket_credentials.admit): what its watcher re-checks.
    socket_caller: Caller | None = None
    # Login failures and operation rate limits: the server passes the process's shared
    # counters (Redis when there is one); a bare Context counts only for itself.
    counters: Counters = field(default_factory=MemoryCounters)
    # An HTTP request's one operation; sockets keep theirs in OPERATION_AUTH.
    _request_auth: OperationAuth = field(default_factory=OperationAuth)
    _socket_authorization: Any = field(default=_UNSET)

    @property
    def client_ip(self) -> str:
        """The client's address: the peer's, or what a proxy listed in TRUSTED_PROXIES
        forwarded (web/proxy.py)."""
        client = self.request.client
        return client.host if client is not None else "unknown"

    @cached_property
    def base_url(self) -> str:
        """Where this client reached us over HTTP (a socket's ws:// becomes http://). Read
        once per request: every output of a page asks for it, and building it parses the
        request's URL."""
        url = str(self.request.base_url).rstrip("/")
        if url.startswith("ws"):
            url = "http" + url[2:]
        return url

    def _authorization(self) -> str | None:
        if self.connection_params is None:
            return self.request.headers.get("authorization")
        # connection_init is sent once: its credential is found once.
        if self._socket_authorization is _UNSET:
            self._socket_authorization = authorization_of(self.connection_params)
        value: str | None = self._socket_authorization
        return value

    def operation_auth(self) -> OperationAuth:
        """This operation's authentication state."""
        if self.connection_params is None:
            return self._request_auth
        # On a socket outside any operation (connection_init) there is nothing to keep it on.
        return OPERATION_AUTH.get() or OperationAuth()

    async def caller(self) -> Caller | None:
        """The caller and its credential, authenticated once per operation; a bad credential
        raises (Unauthenticated, with its reason), on every use."""
        state = self.operation_auth()
        if state.refused is not None:
            raise Unauthenticated(state.refused.message, state.refused.reason)
        if not state.looked_up:
            try:
                state.caller = await auth.authenticate_caller(self._authorization(), self.settings)
            except Unauthenticated as refused:
                state.refused = refused
                raise
            state.looked_up = True
        return state.caller

    async def user(self) -> User | None:
        """The caller's account as it is now; a bad credential raises."""
        caller = await self.caller()
        return caller.user if caller is not None else None

    async def require_user(self) -> User:
        user = await self.user()
        if user is None:
            raise Unauthenticated()
        return user

    def needs_admin(self) -> None:
        """This operation ran because its caller is an admin: a socket ends it when the caller
        stops being one (web/socket_credentials.py)."""
        self.operation_auth().needs_admin = True
