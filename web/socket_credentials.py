"""Sockets and their credentials: admitting a socket in connection_init (a refusal closes it
with 4403 and a reason naming what was wrong), and ending it when its credential goes bad.

Each operation on a socket authenticates on its own (schema/context.py), so a bad credential
stops new operations at once. What is already running is ended from here: one watcher per API
process re-checks the credentials of all its open sockets together every
CREDENTIAL_CHECK_INTERVAL_SECONDS, in two batched statements (services/credentials.py: the
accounts with the role they had, the keys), so a revoked key, a deleted account or a lost
role, written by any process or straight into the database, ends their subscriptions within
that interval, in every process, without coordination. A token is closed at its `exp` by a
timer of its own (a handle in the event loop's heap, no task). Idle, a socket costs the
watcher a few index entries and its share of the statements (bench/credential_check.py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from models.user import Role
from schema.context import Context
from services import credentials
from services.auth import Caller
from services.credentials import Credential
from services.errors import AuthFailure, Unauthenticated

log = logging.getLogger("kiln.sockets")

# What a WebSocket close frame can carry.
MAX_REASON_BYTES = 123
MISSING = 'Send {"authorization": "Bearer <token>"} in connection_init.'


def close_reason(refused: Unauthenticated) -> str:
    """`<reason>: <message>`, e.g. `expired: The token has expired; sign in again.`: the
    reason first, for clients to read, then the message, for people."""
    text = f"{refused.reason}: {refused.message}"
    return text.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


class SocketRefused(Exception):
    """Raised in connection_init: the transport (web/websocket.py) closes the socket with 4403
    and this reason (Strawberry's own rejection says only "Forbidden")."""

    def __init__(self, refused: Unauthenticated) -> None:
        super().__init__(refused.message)
        self.reason = close_reason(refused)


async def admit(context: Context) -> Caller:
    """The caller a socket's connection_init names; SocketRefused when it names none or its
    credential is refused. The caller is kept on the context for the transport to watch."""
    try:
        caller = await context.caller()
    except Unauthenticated as refused:
        raise SocketRefused(refused) from refused
    if caller is None:
        raise SocketRefused(Unauthenticated(MISSING, AuthFailure.MISSING))
    context.socket_caller = caller
    return caller


class Watched(Protocol):
    """A socket, as the watcher tells it what became of its credential."""

    async def credential_ended(self, refused: Unauthenticated) -> None: ...

    async def role_changed(self, role: Role) -> None: ...


@dataclass(slots=True)
class _Entry:
    credential: Credential
    expiry: asyncio.TimerHandle | None


class SocketCredentials:
    """The credentials of this process's open sockets, re-checked together every `interval`
    seconds while there is any (the task ends when the last socket leaves).

    Indexed as they come and go (by account, with the role last seen, and by key), so a check
    hands the service what it asks about without a pass over the sockets, and reaches only the
    sockets of what changed."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._sockets: dict[Watched, _Entry] = {}
        self._roles: dict[uuid.UUID, Role] = {}  # each watched account's role, last seen
        self._of_user: dict[uuid.UUID, set[Watched]] = {}
        self._of_key: dict[uuid.UUID, set[Watched]] = {}
        self._task: asyncio.Task[None] | None = None
        self._notices: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._sockets)

    def watch(self, socket: Watched, credential: Credential, role: Role) -> None:
        loop = asyncio.get_running_loop()
        self.forget(socket)
        expiry = None
        if credential.expires_at is not None:
            delay = max(0.0, credential.expires_at - time.time())
            expiry = loop.call_later(delay, self._end, socket, AuthFailure.EXPIRED)
        self._sockets[socket] = _Entry(credential, expiry)
        self._of_user.setdefault(credential.user_id, set()).add(socket)
        # An account already watched keeps the role last seen: if it differs, the next check
        # tells all its sockets, the older ones included.
        self._roles.setdefault(credential.user_id, role)
        if credential.api_key_id is not None:
            self._of_key.setdefault(credential.api_key_id, set()).add(socket)
        # (A task of another event loop, one a restarted app left behind, never runs again.)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name="kiln-socket-credentials")

    def forget(self, socket: Watched) -> None:
        entry = self._sockets.pop(socket, None)
        if entry is None:
            return
        if entry.expiry is not None:
            entry.expiry.cancel()
        user_id, key_id = entry.credential.user_id, entry.credential.api_key_id
        if _leave(self._of_user, user_id, socket):
            del self._roles[user_id]
        if key_id is not None:
            _leave(self._of_key, key_id, socket)

    async def check(self) -> None:
        """One re-check of every watched account and key (each once, however many sockets
        share it); the sockets of what changed are told."""
        if not self._roles:
            return
        found = await credentials.changes(dict(self._roles), list(self._of_key))
        for user_id, role in found.roles.items():
            if role is None:
                for socket in list(self._of_user.get(user_id, ())):
                    self._end(socket, AuthFailure.UNKNOWN_USER)
            elif user_id in self._roles:
                self._roles[user_id] = role
                for socket in list(self._of_user[user_id]):
                    self._notify(socket.role_changed(role))
        for key_id in found.ended_keys:
            for socket in list(self._of_key.get(key_id, ())):
                self._end(socket, AuthFailure.REVOKED)

    async def _run(self) -> None:
        while self._sockets:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                # The database is away: try again next time (a credential is still checked by
                # every new operation, which fails the same way meanwhile).
                log.exception("re-checking socket credentials failed")

    def _end(self, socket: Watched, reason: AuthFailure) -> None:
        if socket in self._sockets:
            self.forget(socket)
            self._notify(socket.credential_ended(credentials.ended(reason)))

    def _notify(self, notice: Coroutine[Any, Any, None]) -> None:
        """Runs a socket's reaction on its own, so one slow socket holds up no other."""
        task = asyncio.get_running_loop().create_task(notice)
        self._notices.add(task)
        task.add_done_callback(self._notice_done)

    def _notice_done(self, task: asyncio.Task[None]) -> None:
        self._notices.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ending a socket failed", exc_info=task.exception())


def _leave(index: dict[uuid.UUID, set[Watched]], key: uuid.UUID, socket: Watched) -> bool:
    """Takes `socket` out of `index[key]`; True when that was the last one there."""
    sockets = index.get(key)
    if sockets is None:
        return False
    sockets.discard(socket)
    if sockets:
        return False
    del index[key]
    return True


_watchers: dict[float, SocketCredentials] = {}


def watcher_for(interval: float) -> SocketCredentials:
    """This process's watcher (one per interval setting: one in any real deployment)."""
    watcher = _watchers.get(interval)
    if watcher is None:
        watcher = _watchers[interval] = SocketCredentials(interval)
    return watcher
