"""The multi-view workflow's moves."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers.ids import parse_id
from schema.context import Context
from schema.permissions import IsAuthenticated
from schema.types import Generation
from services import workflows


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A workflow waiting for approval goes on: its other views are drawn.",
    )
    async def approve_generation(self, info: Info[Context, None], id: strawberry.ID) -> Generation:
        user = await info.context.require_user()
        return Generation.of(await workflows.approve(user, parse_id(id)))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A workflow waiting for approval redraws its front view with the "
        "feedback; the round's price is held at once.",
    )
    async def request_changes(
        self, info: Info[Context, None], id: strawberry.ID, feedback: str
    ) -> Generation:
        user = await info.context.require_user()
        generation = await workflows.request_changes(
            user, parse_id(id), feedback, info.context.catalogue
        )
        return Generation.of(generation)
