"""Tortoise models. Import the concrete classes from here."""

from models.api_key import ApiKey
from models.credits import CreditAccount, LedgerEntry, LedgerKind
from models.error_event import ErrorCategory, ErrorEvent, ErrorHourlyCount, ErrorStatus, Severity
from models.generation import Generation, GenerationKind, GenerationOutput, GenerationStatus
from models.notification import Notification
from models.stats import GenerationHourlyCount
from models.user import Role, User

__all__ = [
    "ApiKey",
    "CreditAccount",
    "ErrorCategory",
    "ErrorEvent",
    "ErrorHourlyCount",
    "ErrorStatus",
    "Generation",
    "GenerationHourlyCount",
    "GenerationKind",
    "GenerationOutput",
    "GenerationStatus",
    "LedgerEntry",
    "LedgerKind",
    "Notification",
    "Role",
    "Severity",
    "User",
]
