from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from models.generation import GenerationKind, GenerationStatus
from models.user import Role
from resolvers.ids import parse_id
from resolvers.paging import DEFAULT_FIRST, First, page_size
from resolvers.selection import selects
from schema.context import Context
from schema.permissions import IsAdmin, IsAuthenticated
from schema.types import (
    ApiCallLog,
    Connection,
    CreditAudit,
    CreditBalance,
    CreditTransaction,
    Generation,
    ModelInfo,
    Preset,
    ProviderHealth,
    User,
)
from services import api_calls, credits, generations
from services.availability import model_availability
from services.errors import Forbidden, NotFound
from services.generations import pages as generation_pages
from services.pagination import check_uuid_cursor


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def me(self, info: Info[Context, None]) -> User:
        return User.of(await info.context.require_user())

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Null when absent or not the caller's (admins see all).",
    )
    async def generation(self, info: Info[Context, None], id: strawberry.ID) -> Generation | None:
        user = await info.context.require_user()
        try:
            return Generation.of(await generations.get_visible(user, parse_id(id)))
        except NotFound:
            return None

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def generations(
        self,
        info: Info[Context, None],
        first: First = DEFAULT_FIRST,
        after: str | None = None,
        status: list[GenerationStatus] | None = None,
        kind: GenerationKind | None = None,
    ) -> Connection[Generation]:
        user = await info.context.require_user()
        if after is not None:
            check_uuid_cursor(after)
        page = await generation_pages.list_generations(
            user,
            first=page_size(first),
            after=after,
            statuses=[GenerationStatus(s) for s in status] if status else None,
            kind=GenerationKind(kind) if kind else None,
            # Read with the page (one statement) when asked for: no DataLoader round after it.
            with_outputs=selects(info, "edges", "node", "outputs"),
        )
        return Connection.of(page, lambda g: Generation.of(g, g.outputs))

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def credit_balance(self, info: Info[Context, None]) -> CreditBalance:
        user = await info.context.require_user()
        return CreditBalance.of(await credits.get_balance(user.id))

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def credit_transactions(
        self,
        info: Info[Context, None],
        first: First = DEFAULT_FIRST,
        after: str | None = None,
        user_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Admins: another user's.")
        ] = None,
    ) -> Connection[CreditTransaction]:
        user = await info.context.require_user()
        owner = user.id
        if user_id is not None:
            if user.role is not Role.ADMIN:
                raise Forbidden("Only admins can read another user's transactions.")
            owner = parse_id(user_id)
        page = await credits.list_transactions(owner, first=page_size(first), after=after)
        return Connection.of(page, CreditTransaction.of)

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Recomputes every account from its ledger (admin only).",
    )
    async def credit_audit(self) -> CreditAudit:
        return CreditAudit.of(await credits.audit())

    @strawberry.field(description="available: false when every provider route is open-circuited.")
    async def models(self, info: Info[Context, None]) -> list[ModelInfo]:
        catalogue = info.context.catalogue
        available = await model_availability(catalogue, info.context.providers)
        return [ModelInfo.of(m, available[m.id]) for m in catalogue.models.values()]

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Breaker state and the last 5 minutes of calls, per provider.",
    )
    async def provider_health(self, info: Info[Context, None]) -> list[ProviderHealth]:
        report = await api_calls.health(info.context.catalogue, info.context.providers)
        return [ProviderHealth.of(h) for h in report]

    @strawberry.field(permission_classes=[IsAdmin])
    async def api_call_logs(
        self,
        first: First = DEFAULT_FIRST,
        after: str | None = None,
        provider: str | None = None,
        failed_only: Annotated[
            bool | None, strawberry.argument(description="Failed calls only; null means false.")
        ] = False,
    ) -> Connection[ApiCallLog]:
        page = await api_calls.list_calls(
            first=page_size(first), after=after, provider=provider, failed_only=bool(failed_only)
        )
        return Connection.of(page, ApiCallLog.of)

    @strawberry.field
    def presets(self, info: Info[Context, None]) -> list[Preset]:
        return [Preset.of(p) for p in info.context.catalogue.presets.values()]
