from __future__ import annotations

import strawberry
from strawberry.types import Info

from models.generation import GenerationKind
from resolvers.ids import parse_id
from schema.context import Context
from schema.inputs import CreateGenerationInput
from schema.permissions import IsAdmin, IsAuthenticated
from schema.types import AuthPayload, CreditBalance, Generation, User
from services import auth, credits, generations
from services.generations import NewGeneration


@strawberry.type
class Mutation:
    @strawberry.mutation(description="New accounts get the signup grant.")
    async def register(self, info: Info[Context, None], email: str, password: str) -> AuthPayload:
        settings = info.context.settings
        user = await auth.register(email, password, settings)
        return AuthPayload(token=auth.issue_token(user, settings), user=User.of(user))

    @strawberry.mutation(
        description="After repeated failures for an email, RATE_LIMITED for a while."
    )
    async def login(self, info: Info[Context, None], email: str, password: str) -> AuthPayload:
        settings = info.context.settings
        user = await auth.login(email, password, settings, info.context.counters)
        return AuthPayload(token=auth.issue_token(user, settings), user=User.of(user))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="Returns at once, QUEUED."
    )
    async def create_generation(
        self, info: Info[Context, None], input: CreateGenerationInput
    ) -> Generation:
        user = await info.context.require_user()
        new = NewGeneration(
            prompt=input.prompt,
            kind=GenerationKind(input.kind),
            model=input.model,
            preset=input.preset,
            negative_prompt=input.negative_prompt,
            input_image_url=input.input_image_url,
            strength=input.strength,
            num_outputs=input.num_outputs,
            width=input.width,
            height=input.height,
            seed=input.seed,
            idempotency_key=input.idempotency_key,
        )
        row = await generations.create_generation(
            user,
            new,
            info.context.catalogue,
            request_id=info.context.request_id,
            fetch_allow_hosts=info.context.providers.fetch_allow_hosts,
        )
        return Generation.of(row)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def cancel_generation(self, info: Info[Context, None], id: strawberry.ID) -> Generation:
        user = await info.context.require_user()
        return Generation.of(await generations.cancel(user, parse_id(id)), [])

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin only. Never takes available credit below zero.",
    )
    async def adjust_credits(
        self,
        user_id: strawberry.ID,
        amount: int,
        reason: str,
        idempotency_key: str | None = None,
    ) -> CreditBalance:
        balance = await credits.adjust(
            parse_id(user_id), amount, reason, idempotency_key=idempotency_key
        )
        return CreditBalance.of(balance)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def retry_generation(self, info: Info[Context, None], id: strawberry.ID) -> Generation:
        user = await info.context.require_user()
        return Generation.of(await generations.retry(user, parse_id(id)), [])
