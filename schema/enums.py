"""The contract's enums are the domain enums, registered with Strawberry, so values never drift."""

from __future__ import annotations

import strawberry

from models.credits import LedgerKind
from models.generation import GenerationKind, GenerationStatus
from models.user import Role

for _enum in (Role, GenerationKind, GenerationStatus, LedgerKind):
    strawberry.enum(_enum)

__all__ = ["GenerationKind", "GenerationStatus", "LedgerKind", "Role"]
