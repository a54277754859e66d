"""Subscriptions: subscribe first, then send the current state read from the database, then
stream changes; the subscription's mailbox drops any state not newer than the last one sent
(realtime/versions.py), whichever way it came: the first read, a message, or the hub's re-read
after its pub/sub connection came back (realtime/catch_up.py).

Changes of generations go out through a projection of the subscriber's selection when the
transport allows it (resolvers/projection.py): the same payload, without re-running GraphQL
execution for every message; an event the projection cannot reproduce is executed as usual.

Where the transport also offers HAND_OFF (the WebSocket transport, web/websocket.py), a resolver
hands the rest of its subscription over as a `Follow` once its first message is out, and
returns: the resolver's generator, Strawberry's stream with its extensions, graphql-core's
executor and the parsed operation are released, rather than kept for as long as the
subscription lasts (hours, for an idle subscriber), and the transport delivers the changes
holding only the mailbox (with the last versions sent) and the compiled projection."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.types import Info

from models.generation import FINAL_STATUSES, GenerationStatus
from models.user import User
from realtime import channels
from realtime.hub import get_hub
from realtime.mailbox import Mailbox, Message
from resolvers.ids import parse_id
from resolvers.projection import (
    DIRECT_SEND,
    DirectSend,
    Projection,
    Unsupported,
    compile_projection,
)
from schema.context import Context
from schema.permissions import IsAuthenticated
from schema.types import CreditBalance, Generation
from services import credits, generations

# Sends one `next` message for a root value through graphql-core's execution (errors and all).
ExecuteEvent = Callable[[Any], Awaitable[None]]
# Takes over the rest of a subscription from its resolver.
HandOff = Callable[["Follow"], None]
HAND_OFF: ContextVar[HandOff | None] = ContextVar("kiln_hand_off", default=None)


@dataclass
class _Direct:
    """Sends generation messages straight to this subscriber, when it can."""

    send: DirectSend
    projection: Projection
    context: Context

    @classmethod
    def of(cls, info: Info[Context, None]) -> _Direct | None:
        send = DIRECT_SEND.get()
        if send is None:
            return None
        projection = compile_projection(info)
        return None if projection is None else cls(send, projection, info.context)

    async def sent(self, message: dict[str, Any]) -> bool:
        """True once `message` is sent; False when it must be yielded (executed) instead."""
        try:
            payload = await self.projection.payload(message, Generation.from_message, self.context)
        except Unsupported:
            return False
        await self.send(payload)
        return True


class Follow:
    """The rest of one subscription after its resolver returned: what delivering its changes
    needs, and nothing else (kept for every idle subscriber, so no __dict__). Its mailbox
    drops every state not newer than one the subscriber has (realtime/versions.py)."""

    __slots__ = ("context", "ends", "mailbox", "projection", "value")

    def __init__(
        self,
        mailbox: Mailbox,
        projection: Projection,
        context: Context,
        value: Callable[[Message], Any],
        *,
        ends: bool,
    ) -> None:
        self.mailbox = mailbox
        self.projection = projection
        self.context = context
        self.value = value  # the message as the subscription field's root value
        self.ends = ends  # completes after a generation's final state

    async def run(self, send: DirectSend, execute: ExecuteEvent) -> None:
        """Delivers every change, in order, until the final state (when `ends`), the hub's
        close, or cancellation; the caller closes it afterwards."""
        async for message in self.mailbox:
            try:
                payload = await self.projection.payload(message, self.value, self.context)
            except Unsupported:
                await execute(self.value(message))
            else:
                await send(payload)
            if self.ends and _final(message):
                return

    async def close(self) -> None:
        await get_hub().detach(self.mailbox)


def _final(message: Message) -> bool:
    return GenerationStatus(message["status"]) in FINAL_STATUSES


def _hand_off(
    info: Info[Context, None],
    mailbox: Mailbox,
    value: Callable[[Message], Any],
    *,
    ends: bool = False,
) -> bool:
    """True when the transport took the subscription over; the caller then returns at once
    and no longer owns `mailbox`."""
    take = HAND_OFF.get()
    if take is None:
        return False
    projection = compile_projection(info)
    if projection is None:
        return False
    take(Follow(mailbox, projection, info.context, value, ends=ends))
    return True


def _credit_balance(message: Message) -> CreditBalance:
    return CreditBalance(**message)


async def _current_state(user: User, generation_id: uuid.UUID) -> tuple[Generation, int, bool]:
    """The generation as the database has it now, its version, and whether it is final."""
    row = await generations.get_visible(user, generation_id)
    outputs = await generations.outputs_of(generation_id)
    return Generation.of(row, outputs), row.version, row.status in FINAL_STATUSES


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="First message is the current state; ends after a final state.",
    )
    async def generation_updated(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> AsyncGenerator[Generation, None]:
        user = await info.context.require_user()
        generation_id = parse_id(id)
        hub = get_hub()
        mailbox = await hub.attach(channels.generation(generation_id))
        handed = False  # True once the transport owns the mailbox (HAND_OFF)
        try:
            first, version, final = await _current_state(user, generation_id)
            mailbox.sent(str(generation_id), version)
            yield first
            # A subscription may stay open for long: the mailbox keeps the version, not this.
            del first, user
            if final:
                return
            if _hand_off(info, mailbox, Generation.from_message, ends=True):
                handed = True
                return
            direct = _Direct.of(info)
            async for message in mailbox:
                if direct is None or not await direct.sent(message):
                    yield Generation.from_message(message)
                if _final(message):
                    return
        finally:
            if not handed:
                await hub.detach(mailbox)

    @strawberry.subscription(permission_classes=[IsAuthenticated])
    async def my_generations(self, info: Info[Context, None]) -> AsyncGenerator[Generation, None]:
        user = await info.context.require_user()
        hub = get_hub()
        mailbox = await hub.attach(channels.user_generations(user.id))
        handed = False
        try:
            if _hand_off(info, mailbox, Generation.from_message):
                handed = True
                return
            direct = _Direct.of(info)
            async for message in mailbox:
                if direct is None or not await direct.sent(message):
                    yield Generation.from_message(message)
        finally:
            if not handed:
                await hub.detach(mailbox)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="First message is the current balance.",
    )
    async def credit_balance_changed(
        self, info: Info[Context, None]
    ) -> AsyncGenerator[CreditBalance, None]:
        user = await info.context.require_user()
        channel = channels.user_credits(user.id)
        hub = get_hub()
        mailbox = await hub.attach(channel)
        handed = False
        try:
            balance = await credits.get_balance(user.id)
            mailbox.sent(channel, balance.version)
            yield CreditBalance.of(balance)
            if _hand_off(info, mailbox, _credit_balance):
                handed = True
                return
            async for message in mailbox:
                yield _credit_balance(message)
        finally:
            if not handed:
                await hub.detach(mailbox)
