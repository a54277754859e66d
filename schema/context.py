"""The typed per-request (or per-socket) Context."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from models.user import User
from schema.loaders import Loaders
from services import auth
from services.catalogue import Catalogue
from services.errors import Unauthenticated
from services.rate_limits import Counters, MemoryCounters
from services.routing import ProviderDeps
from settings import Settings

_UNSET: Any = object()


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
    # Login failures and operation rate limits: the server passes the process's shared
    # counters (Redis when there is one); a bare Context counts only for itself.
    counters: Counters = field(default_factory=MemoryCounters)
    _user: Any = field(default=_UNSET)

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
        if self.connection_params is not None:
            value = self.connection_params.get("authorization")
            return value if isinstance(value, str) else None
        return self.request.headers.get("authorization")

    async def user(self) -> User | None:
        """The caller, authenticated once per request; a bad credential raises."""
        if self._user is _UNSET:
            self._user = await auth.authenticate(self._authorization(), self.settings)
        user: User | None = self._user
        return user

    async def require_user(self) -> User:
        user = await self.user()
        if user is None:
            raise Unauthenticated()
        return user
