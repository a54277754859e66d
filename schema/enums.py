"""The contract's enums are the domain enums, registered with Strawberry, so values never drift."""

from __future__ import annotations

import strawberry

from models.credits import LedgerKind
from models.generation import GenerationKind, GenerationStatus
from models.user import Role
from services.breakers import CircuitState

for _enum in (Role, GenerationKind, GenerationStatus, LedgerKind, CircuitState):
    strawberry.enum(_enum)

__all__ = ["CircuitState", "GenerationKind", "GenerationStatus", "LedgerKind", "Role"]
