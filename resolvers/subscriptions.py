"""Subscriptions: subscribe first, then send the current state read from the database, then
stream changes, dropping any message whose version is not newer than the last one sent.

Changes of generations go out through a projection of the subscriber's selection when the
transport allows it (resolvers/projection.py): the same payload, without re-running GraphQL
execution for every message; an event the projection cannot reproduce is yielded as usual."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.types import Info

from models.generation import FINAL_STATUSES, GenerationStatus
from models.user import User
from realtime import channels
from realtime.hub import get_hub
from resolvers.ids import parse_id
from resolvers.projection import (
    DIRECT_SEND,
    DirectSend,
    Projection,
    Unsupported,
    compile_projection,
)
from schema.permissions import IsAuthenticated
from schema.types import CreditBalance, Generation
from services import credits, generations


@dataclass
class _Direct:
    """Sends generation messages straight to this subscriber, when it can."""

    send: DirectSend
    projection: Projection
    context: Any

    @classmethod
    def of(cls, info: Info) -> _Direct | None:
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
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[Generation, None]:
        user = await info.context.require_user()
        generation_id = parse_id(id)
        async with get_hub().subscribe(channels.generation(generation_id)) as mailbox:
            first, last, final = await _current_state(user, generation_id)
            yield first
            # A subscription may stay open for long: it keeps the version, not the state.
            del first, user
            if final:
                return
            direct = _Direct.of(info)
            async for message in mailbox:
                if message["version"] <= last:
                    continue
                last = message["version"]
                if direct is None or not await direct.sent(message):
                    yield Generation.from_message(message)
                if GenerationStatus(message["status"]) in FINAL_STATUSES:
                    return

    @strawberry.subscription(permission_classes=[IsAuthenticated])
    async def my_generations(self, info: Info) -> AsyncGenerator[Generation, None]:
        user = await info.context.require_user()
        seen: dict[str, int] = {}
        direct = _Direct.of(info)
        async with get_hub().subscribe(channels.user_generations(user.id)) as mailbox:
            async for message in mailbox:
                if message["version"] <= seen.get(message["id"], 0):
                    continue
                seen[message["id"]] = message["version"]
                if direct is None or not await direct.sent(message):
                    yield Generation.from_message(message)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="First message is the current balance.",
    )
    async def credit_balance_changed(self, info: Info) -> AsyncGenerator[CreditBalance, None]:
        user = await info.context.require_user()
        async with get_hub().subscribe(channels.user_credits(user.id)) as mailbox:
            balance = await credits.get_balance(user.id)
            yield CreditBalance.of(balance)
            last = balance.version
            async for message in mailbox:
                if message["version"] <= last:
                    continue
                last = message["version"]
                yield CreditBalance(**message)
