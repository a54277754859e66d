"""A socket checks its credential on every operation, as HTTP does, and ends when it goes bad:
a revoked key, an expired token or a deleted account closes the socket with 4403 and a reason
that names it; an admin who lost the role loses admin operations at once and admin-only
subscriptions within the check interval. connection_init is read in any letter case.

The handler is driven message by message, with Kiln's real `on_ws_connect`, over a socket
stand-in that records what it sends and how it was closed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from tortoise import connections

from models.api_key import ApiKey
from models.user import Role, User
from services import api_keys, auth
from services.credentials import Credential
from services.errors import AuthFailure, Unauthenticated
from services.sql import dialect_sql
from tests.support.schema import request_context
from web.graphql_app import KilnGraphQL
from web.socket_credentials import SocketCredentials
from web.websocket import LimitedTransportWS

TIMEOUT = 10.0
# The running subscriptions of a credential that went bad end within this (the issue's bound).
ENDS_WITHIN = 5.0
CHECK_INTERVAL = 0.5
BALANCE = "subscription { creditBalanceChanged { available version } }"
ERRORS = "subscription { errorEventStream { id } }"
AUDIT = "query { creditAudit { ok } }"
NEW_KEY = 'mutation { createApiKey(name: "minted on a dead socket") { secret } }'
ME = "query { me { id } }"


class Socket:
    """Strawberry's socket adapter, as the handler uses it; `ws` makes direct sends possible."""

    def __init__(self) -> None:
        self.ws = self
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        self.closed_event = asyncio.Event()

    async def send_json(self, message: dict[str, Any]) -> None:
        assert self.closed is None, f"sent {message} after the close"
        await self.received.put(json.loads(json.dumps(message)))

    async def send_text(self, text: str) -> None:
        assert self.closed is None, f"sent {text} after the close"
        await self.received.put(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        assert self.closed is None, f"closed twice: {self.closed}, then {(code, reason)}"
        self.closed = (code, reason)
        self.closed_event.set()

    async def next(self, within: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            return await self.received.get()

    async def wait_closed(self, within: float) -> tuple[int, str]:
        async with asyncio.timeout(within):
            await self.closed_event.wait()
        assert self.closed is not None
        return self.closed


class Connection:
    def __init__(self, handler: LimitedTransportWS, socket: Socket) -> None:
        self.handler = handler
        self.socket = socket
        self._ids = 0

    async def send(self, query: str) -> str:
        self._ids += 1
        operation_id = str(self._ids)
        message: Any = {"id": operation_id, "type": "subscribe", "payload": {"query": query}}
        await self.handler.handle_message(message)
        return operation_id

    async def answer(self, query: str) -> dict[str, Any]:
        """The first message the operation gets back."""
        operation_id = await self.send(query)
        message = await self.socket.next()
        assert message.get("id") == operation_id, message
        return message


def code_of(message: dict[str, Any]) -> str | None:
    """The error code an operation's message carries, None when it carries data."""
    if message["type"] == "error":
        return str(message["payload"][0]["extensions"]["code"])
    errors = message["payload"].get("errors")
    return str(errors[0]["extensions"]["code"]) if errors else None


class Sockets:
    """Opens sockets on one view of Kiln's GraphQL app, with a short credential check interval."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.view = KilnGraphQL(settings)
        self.handlers: list[LimitedTransportWS] = []

    async def open(self, init_payload: dict[str, Any], *, acked: bool = True) -> Connection:
        socket = Socket()
        adapter: Any = socket
        handler = LimitedTransportWS(
            self.view,
            adapter,
            request_context(self.settings),
            None,
            self.view.schema,
            timedelta(seconds=30),
            5,
        )
        self.handlers.append(handler)
        init: Any = {"type": "connection_init", "payload": init_payload}
        await handler.handle_message(init)
        if acked:
            assert socket.closed is None, socket.closed
            ack = await socket.next()
            assert ack["type"] == "connection_ack", (ack, socket.closed)
        return Connection(handler, socket)

    async def close_all(self) -> None:
        for handler in self.handlers:
            await handler.shutdown()


@pytest.fixture
async def sockets(backend) -> AsyncIterator[Sockets]:
    settings = backend.settings.model_copy(
        update={"credential_check_interval_seconds": CHECK_INTERVAL}
    )
    opened = Sockets(settings)
    try:
        yield opened
    finally:
        await opened.close_all()


def bearer(credential: str) -> dict[str, Any]:
    return {"authorization": f"Bearer {credential}"}


async def set_role(user: User, role: Role) -> None:
    """Straight into the database, as an operator's UPDATE would: no service is told."""
    connection = connections.get("default")
    await connection.execute_query(
        dialect_sql("UPDATE users SET role = ? WHERE id = ?", connection),
        [role.value, str(user.id)],
    )


async def delete_user(user: User) -> None:
    """An account without ledger entries (the ledger keeps every other one), removed by hand."""
    connection = connections.get("default")
    for table, column in (("api_keys", "user_id"), ("credit_accounts", "user_id"), ("users", "id")):
        await connection.execute_query(
            dialect_sql(f"DELETE FROM {table} WHERE {column} = ?", connection), [str(user.id)]
        )


# --- new operations check the credential as HTTP does ------------------------------------


async def test_a_revoked_key_is_refused_at_once_and_its_socket_closed(sockets, make_user):
    """The issue: a socket opened with a key kept working after revokeApiKey, and could even
    mint a new key with createApiKey."""
    user = await make_user()
    row, secret = await api_keys.create(user, "bot", sockets.settings)
    connection = await sockets.open(bearer(secret))
    assert code_of(await connection.answer(ME)) is None
    await connection.socket.next()  # complete

    await api_keys.revoke(user, row.id)
    assert code_of(await connection.answer(NEW_KEY)) == "UNAUTHENTICATED"
    code, reason = await connection.socket.wait_closed(ENDS_WITHIN)
    assert code == 4403 and reason.startswith("revoked"), reason
    assert await ApiKey.filter(user_id=user.id).count() == 1


async def test_an_expired_token_is_refused_at_once(sockets, make_user, monkeypatch):
    """The issue: a JWT that had expired 2 s before still ran createGeneration on its open
    socket. The clock is moved past the token's expiry (the socket's own timer, which would
    close it at exp, has not fired): the next operation is refused all the same."""
    user = await make_user()
    token = auth.issue_token(user, sockets.settings)
    connection = await sockets.open(bearer(token))
    later = auth.time.time() + sockets.settings.jwt_ttl_seconds + 2
    monkeypatch.setattr(auth.time, "time", lambda: later)
    create = 'mutation { createGeneration(input: {prompt: "after expiry"}) { id } }'
    assert code_of(await connection.answer(create)) == "UNAUTHENTICATED"
    code, reason = await connection.socket.wait_closed(ENDS_WITHIN)
    assert code == 4403 and reason.startswith("expired"), reason


async def test_a_demoted_admin_loses_admin_operations_at_once(sockets, make_user):
    admin = await make_user(role=Role.ADMIN)
    connection = await sockets.open(bearer(auth.issue_token(admin, sockets.settings)))
    assert code_of(await connection.answer(AUDIT)) is None
    await connection.socket.next()  # complete
    await set_role(admin, Role.USER)
    assert code_of(await connection.answer(AUDIT)) == "FORBIDDEN"
    await connection.socket.next()  # complete
    # Still a valid account: its socket stays open for what a user may do.
    assert code_of(await connection.answer(ME)) is None
    assert connection.socket.closed is None


# --- running subscriptions end within seconds ------------------------------------------


async def test_a_revoked_keys_running_subscription_is_closed(sockets, make_user):
    user = await make_user()
    row, secret = await api_keys.create(user, "bot", sockets.settings)
    connection = await sockets.open(bearer(secret))
    await connection.send(BALANCE)
    assert code_of(await connection.socket.next()) is None  # the current balance
    await api_keys.revoke(user, row.id)
    code, reason = await connection.socket.wait_closed(ENDS_WITHIN)
    assert code == 4403 and reason.startswith("revoked"), reason
    assert connection.handler.operations == {}


async def test_a_deleted_users_running_subscription_is_closed(sockets, make_user):
    user = await make_user(credits=0)
    connection = await sockets.open(bearer(auth.issue_token(user, sockets.settings)))
    await connection.send("subscription { notifications { id } }")
    await delete_user(user)
    code, reason = await connection.socket.wait_closed(ENDS_WITHIN)
    assert code == 4403 and reason.startswith("unknown user"), reason


async def test_a_socket_is_closed_when_its_token_expires(sockets, make_user):
    # Two seconds: `exp` is whole seconds (rounded down), so one could be nearly gone already.
    short = sockets.settings.model_copy(update={"jwt_ttl_seconds": 2})
    user = await make_user()
    token = auth.issue_token(user, short)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    connection = await sockets.open(bearer(token))
    await connection.send(BALANCE)
    await connection.socket.next()
    code, reason = await connection.socket.wait_closed(ENDS_WITHIN)
    assert code == 4403 and reason.startswith("expired"), reason
    assert auth.time.time() >= expires - 0.05  # not before its time


async def test_a_demoted_admins_error_stream_ends_with_forbidden(sockets, make_user):
    """The protocol's `error` message, as a user who is not an admin gets when subscribing:
    the operation is over (no `complete` follows); the socket stays open."""
    admin = await make_user(role=Role.ADMIN)
    connection = await sockets.open(bearer(auth.issue_token(admin, sockets.settings)))
    stream = await connection.send(ERRORS)
    await connection.send(BALANCE)
    assert code_of(await connection.socket.next()) is None  # the balance subscription's first
    await set_role(admin, Role.USER)
    ended = await connection.socket.next(ENDS_WITHIN)
    assert ended["id"] == stream and ended["type"] == "error", ended
    assert code_of(ended) == "FORBIDDEN"
    assert connection.socket.closed is None
    assert list(connection.handler.operations) == ["2"]  # the balance goes on


async def test_subscriptions_of_good_credentials_go_on(sockets, make_user):
    admin = await make_user(role=Role.ADMIN)
    connection = await sockets.open(bearer(auth.issue_token(admin, sockets.settings)))
    await connection.send(ERRORS)
    await asyncio.sleep(CHECK_INTERVAL * 3)
    assert connection.socket.received.empty() and connection.socket.closed is None
    assert list(connection.handler.operations) == ["1"]


# --- connection_init -------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        lambda value: {"authorization": value},
        lambda value: {"Authorization": value},
        lambda value: {"AUTHORIZATION": value},
        lambda value: {"headers": {"Authorization": value}},
        lambda value: {"headers": {"authorization": value}},
    ],
    ids=["lower", "capitalised", "upper", "headers-capitalised", "headers-lower"],
)
async def test_the_authorization_key_is_read_in_any_case(sockets, make_user, shape):
    user = await make_user()
    connection = await sockets.open(shape(f"Bearer {auth.issue_token(user, sockets.settings)}"))
    answer = await connection.answer(ME)
    assert answer["payload"]["data"]["me"]["id"] == str(user.id)


async def test_refused_sockets_say_why(sockets, make_user):
    user = await make_user()
    expired = jwt.encode(
        {"sub": str(user.id), "exp": 1}, sockets.settings.jwt_secret, algorithm="HS256"
    )
    forged = jwt.encode({"sub": str(user.id), "exp": 9999999999}, "x" * 32, algorithm="HS256")
    row, secret = await api_keys.create(user, "bot", sockets.settings)
    await api_keys.revoke(user, row.id)
    ghost = auth.issue_token(User(id=uuid.uuid4(), role=Role.USER), sockets.settings)
    cases = {
        "missing": {},
        "malformed": {"authorization": "Token abc"},
        "malformed ": {"authorization": "Bearer not-a-token"},
        "malformed  ": {"authorization": 42},
        "invalid": bearer(forged),
        "invalid ": bearer("kiln_" + "A" * 43),
        "expired": bearer(expired),
        "revoked": bearer(secret),
        "unknown user": bearer(ghost),
    }
    for expected, payload in cases.items():
        connection = await sockets.open(payload, acked=False)
        code, reason = await connection.socket.wait_closed(TIMEOUT)
        assert code == 4403, (payload, reason)
        assert reason.startswith(expected.strip() + ":"), (payload, reason)
        assert len(reason.encode()) <= 123  # what a close frame can carry


# --- the watcher ------------------------------------------------------------------------


class Recorder:
    """A socket as the watcher sees it."""

    def __init__(self) -> None:
        self.told: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    async def credential_ended(self, refused: Unauthenticated) -> None:
        await self.told.put(("ended", refused.reason))

    async def role_changed(self, role: Role) -> None:
        await self.told.put(("role", role))

    async def next(self) -> tuple[str, object]:
        async with asyncio.timeout(ENDS_WITHIN):
            return await self.told.get()


async def test_the_watcher_tells_every_socket_of_what_changed(make_user):
    """A socket opened after the change still has the older sockets of its account told; a
    deleted account ends all of them; a socket that left is told nothing."""
    admin, other = await make_user(role=Role.ADMIN), await make_user(credits=0)
    watcher = SocketCredentials(interval=0.05)
    older, newer, gone, left = Recorder(), Recorder(), Recorder(), Recorder()
    watcher.watch(older, Credential(admin.id), Role.ADMIN)
    await set_role(admin, Role.USER)
    watcher.watch(newer, Credential(admin.id), Role.USER)
    watcher.watch(gone, Credential(other.id), Role.USER)
    watcher.watch(left, Credential(other.id), Role.USER)
    watcher.forget(left)
    await delete_user(other)
    assert await older.next() == ("role", Role.USER)
    assert await newer.next() == ("role", Role.USER)  # harmless: it is one already
    assert await gone.next() == ("ended", AuthFailure.UNKNOWN_USER)
    watcher.forget(older)
    watcher.forget(newer)
    assert len(watcher) == 0
    await asyncio.sleep(0.2)
    assert left.told.empty() and older.told.empty()
