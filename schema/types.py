"""Object types of the contract."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from models.api_call import ApiCallLog as ApiCallLogRow
from models.credits import LedgerEntry
from models.generation import Generation as GenerationRow
from models.user import User as UserRow
from schema.context import Context
from schema.copying import copied
from schema.enums import GenerationKind, GenerationStatus, LedgerKind, Role
from services import api_calls, credits
from services.breakers import CircuitState
from services.catalogue import ModelSpec, PresetSpec
from services.generations.outputs import StoredOutput
from services.generations.pages import ListedGeneration
from services.pagination import Page
from storage import get_store

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def _edge_cursor(root: Edge[Any]) -> str:
    return root.cursor_of(root.row)


@strawberry.type
class Edge(Generic[NodeT]):
    """Named `<Node>Edge` in the schema (`Edge[Generation]` is GenerationEdge)."""

    # Encoded only when asked for: a client paging through usually reads pageInfo.endCursor
    # alone, and a page builds twenty edges.
    cursor: str = strawberry.field(resolver=_edge_cursor)
    node: NodeT
    row: strawberry.Private[Any]
    cursor_of: strawberry.Private[Callable[[Any], str]]


@strawberry.type
class Connection(Generic[NodeT]):
    """Named `<Node>Connection` in the schema (`Connection[Generation]` is
    GenerationConnection), with the contract's shape: edges and pageInfo."""

    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @classmethod
    def of(cls, page: Page[RowT], node: Callable[[RowT], NodeT]) -> Connection[NodeT]:
        """A service's page as a connection, each row's node made by `node`."""
        items, cursor_of = page.items, page.cursor_of
        return cls(
            edges=[Edge(node=node(row), row=row, cursor_of=cursor_of) for row in items],
            page_info=PageInfo(
                has_next_page=page.has_next,
                end_cursor=cursor_of(items[-1]) if items else None,
            ),
        )


@strawberry.type
class CreditBalance:
    available: int
    reserved: int
    version: int = strawberry.field(
        description="The account's own sequence: one more with every change to this account's "
        "credits. Keep the balance with the newest."
    )

    @strawberry.field
    def total(self) -> int:
        return self.available + self.reserved

    @classmethod
    def of(cls, balance: credits.Balance) -> CreditBalance:
        return cls(available=balance.available, reserved=balance.reserved, version=balance.version)


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    role: Role
    created_at: datetime
    priority: bool = strawberry.field(
        default=False, description="Premium: higher rate limits and the priority queue."
    )

    @strawberry.field
    async def credits(self) -> CreditBalance:
        return CreditBalance.of(await credits.get_balance(uuid.UUID(self.id)))

    @classmethod
    def of(cls, row: UserRow) -> User:
        return copied(cls, row, id=strawberry.ID(str(row.id)))


@strawberry.type
class AuthPayload:
    token: str
    user: User


@strawberry.type
class CreditTransaction:
    id: strawberry.ID
    kind: LedgerKind
    amount: int
    balance_after: int
    generation_id: strawberry.ID | None
    reference: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: LedgerEntry) -> CreditTransaction:
        generation_id = row.generation_id
        return copied(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            generation_id=strawberry.ID(str(generation_id)) if generation_id else None,
        )


@strawberry.type
class Output:
    index: int
    url: str
    content_type: str
    size_bytes: int
    width: int | None
    height: int | None
    text: str | None

    @classmethod
    def of(cls, stored: StoredOutput, base_url: str) -> Output:
        # Written out rather than copied(): a page builds twenty of these, and this is its
        # hottest constructor.
        return cls(
            index=stored.index,
            url=get_store().url_for(stored.storage_key, base_url),
            content_type=stored.content_type,
            size_bytes=stored.size_bytes,
            width=stored.width,
            height=stored.height,
            text=stored.text,
        )


@strawberry.type
class GenerationError:
    code: str
    message: str


@strawberry.type
class Generation:
    id: strawberry.ID
    kind: GenerationKind
    status: GenerationStatus
    progress: float
    stage: str | None
    model: str
    preset: str | None
    provider: str | None
    prompt: str
    negative_prompt: str | None
    params: JSON
    cost: int
    attempts: int
    version: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    parent_id: strawberry.Private[str | None]
    error_code: strawberry.Private[str | None]
    error_message: strawberry.Private[str | None]
    # Known outputs (from a pub/sub message); None means "load them".
    known_outputs: strawberry.Private[list[StoredOutput] | None]

    @strawberry.field
    def error(self) -> GenerationError | None:
        if self.error_code is None:
            return None
        return GenerationError(code=self.error_code, message=self.error_message or "")

    @strawberry.field
    async def outputs(self, info: Info[Context, None]) -> list[Output]:
        stored = self.known_outputs
        if stored is None:
            stored = await info.context.loaders.outputs.load(uuid.UUID(self.id))
        if not stored:
            return []
        base_url = info.context.base_url
        return [Output.of(o, base_url) for o in stored]

    @strawberry.field
    async def parent(self, info: Info[Context, None]) -> Generation | None:
        if self.parent_id is None:
            return None
        row = await info.context.loaders.generation.load(uuid.UUID(self.parent_id))
        return Generation.of(row) if row else None

    @strawberry.field
    async def children(self, info: Info[Context, None]) -> list[Generation]:
        rows = await info.context.loaders.children.load(uuid.UUID(self.id))
        return [Generation.of(row) for row in rows]

    @classmethod
    def of(
        cls, row: GenerationRow | ListedGeneration, outputs: list[StoredOutput] | None = None
    ) -> Generation:
        """From a row (straight from its fields: every page builds twenty of these), with its
        outputs when they were read with it."""
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=row.kind,
            status=row.status,
            progress=row.progress,
            stage=row.stage,
            model=row.model,
            preset=row.preset,
            provider=row.provider,
            prompt=row.prompt,
            negative_prompt=row.negative_prompt,
            params=JSON(row.params),
            cost=row.cost,
            attempts=row.attempts,
            version=row.version,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            parent_id=str(row.parent_id) if row.parent_id else None,
            error_code=row.error_code,
            error_message=row.error_message,
            known_outputs=outputs,
        )

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Generation:
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        outputs = message.get("outputs")
        return cls(
            id=strawberry.ID(message["id"]),
            kind=GenerationKind(message["kind"]),
            status=GenerationStatus(message["status"]),
            progress=message["progress"],
            stage=message["stage"],
            model=message["model"],
            preset=message["preset"],
            provider=message["provider"],
            prompt=message["prompt"],
            negative_prompt=message["negative_prompt"],
            params=message["params"],
            cost=message["cost"],
            attempts=message["attempts"],
            version=message["version"],
            created_at=datetime.fromisoformat(message["created_at"]),
            started_at=when(message["started_at"]),
            completed_at=when(message["completed_at"]),
            parent_id=message["parent_id"],
            error_code=message["error_code"],
            error_message=message["error_message"],
            known_outputs=None if outputs is None else [StoredOutput(**o) for o in outputs],
        )


@strawberry.type
class ModelInfo:
    id: str
    kind: GenerationKind
    cost_per_output: int
    available: bool
    providers: list[str]

    @classmethod
    def of(cls, spec: ModelSpec, available: bool) -> ModelInfo:
        return copied(cls, spec, available=available, providers=[r.provider for r in spec.routes])


@strawberry.type
class Preset:
    id: str
    name: str
    tag: str | None
    description: str | None
    kind: GenerationKind
    model: str
    prompt: str
    negative_prompt: str | None
    strength: float | None
    cost: int

    @classmethod
    def of(cls, spec: PresetSpec) -> Preset:
        return copied(cls, spec)


@strawberry.type
class CreditMismatch:
    user_id: strawberry.ID
    balance: int
    ledger_sum: int
    reserved: int
    ledger_held: int


@strawberry.type
class CreditAudit:
    accounts: int
    ok: bool
    mismatches: list[CreditMismatch]

    @classmethod
    def of(cls, audit: credits.Audit) -> CreditAudit:
        return cls(
            accounts=audit.accounts,
            ok=audit.ok,
            mismatches=[
                copied(CreditMismatch, m, user_id=strawberry.ID(str(m.user_id)))
                for m in audit.mismatches
            ],
        )


@strawberry.type
class ProviderHealth:
    provider: str
    circuit: CircuitState
    calls: int
    success_rate: float
    p95_latency_ms: int | None
    last_error: str | None
    last_checked_at: datetime | None

    @classmethod
    def of(cls, health: api_calls.ProviderHealth) -> ProviderHealth:
        return copied(cls, health)


@strawberry.type
class ApiCallLog:
    id: strawberry.ID
    provider: str
    model: str
    generation_id: strawberry.ID | None
    status_code: int | None
    duration_ms: int
    ok: bool
    error: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: ApiCallLogRow) -> ApiCallLog:
        return copied(
            cls,
            row,
            id=strawberry.ID(str(row.id)),
            model=row.model or "",
            generation_id=strawberry.ID(str(row.generation_id)) if row.generation_id else None,
        )
