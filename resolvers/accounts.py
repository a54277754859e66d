"""API keys (each user their own) and the premium/priority flag (admins)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers.ids import parse_id
from schema.context import Context
from schema.permissions import IsAdmin, IsAuthenticated
from schema.security_types import ApiKey, CreatedApiKey
from schema.types import User
from services import api_keys, auth


@strawberry.type
class AccountsQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated], description="The caller's live API keys."
    )
    async def api_keys(self, info: Info[Context, None]) -> list[ApiKey]:
        user = await info.context.require_user()
        return [ApiKey.of(row) for row in await api_keys.list_keys(user)]


@strawberry.type
class AccountsMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A new API key; its secret is returned only this once.",
    )
    async def create_api_key(self, info: Info[Context, None], name: str) -> CreatedApiKey:
        user = await info.context.require_user()
        row, secret = await api_keys.create(user, name, info.context.settings)
        return CreatedApiKey(secret=secret, api_key=ApiKey.of(row))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="The key stops working at once. Only your own keys.",
    )
    async def revoke_api_key(self, info: Info[Context, None], id: strawberry.ID) -> ApiKey:
        user = await info.context.require_user()
        return ApiKey.of(await api_keys.revoke(user, parse_id(id)))

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin only. Priority accounts get higher rate limits and the priority queue.",
    )
    async def set_user_priority(self, user_id: strawberry.ID, priority: bool) -> User:
        return User.of(await auth.set_priority(parse_id(user_id), priority))
