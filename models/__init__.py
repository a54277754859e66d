"""Tortoise models. Import the concrete classes from here."""

from models.credits import CreditAccount, LedgerEntry, LedgerKind
from models.error_event import ErrorCategory, ErrorEvent, ErrorStatus, Severity
from models.generation import Generation, GenerationKind, GenerationOutput, GenerationStatus
from models.user import Role, User

__all__ = [
    "CreditAccount",
    "ErrorCategory",
    "ErrorEvent",
    "ErrorStatus",
    "Generation",
    "GenerationKind",
    "GenerationOutput",
    "GenerationStatus",
    "LedgerEntry",
    "LedgerKind",
    "Role",
    "Severity",
    "User",
]
