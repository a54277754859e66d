"""Types of API keys."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models.api_key import ApiKey as ApiKeyRow
from schema.copying import copied


@strawberry.type(description="A server-to-server key. The secret itself is never shown again.")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="The key's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        return copied(cls, row, id=strawberry.ID(str(row.id)))


@strawberry.type
class CreatedApiKey:
    secret: str = strawberry.field(
        description="Use as `Authorization: Bearer <secret>`. Shown only this once."
    )
    api_key: ApiKey
