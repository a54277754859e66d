"""Types of the operations surface: error events, stats, queue, notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from models.error_event import ErrorCategory, ErrorStatus, Severity
from schema.copying import copied
from services import stats
from services.stats import TimeWindow

# The contract's enums are the domain enums (registered once, whoever imports this first).
for _enum in (Severity, ErrorCategory, ErrorStatus, TimeWindow):
    if "__strawberry_definition__" not in vars(_enum):
        strawberry.enum(_enum)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@strawberry.type
class ErrorOccurrence:
    at: datetime
    user_id: strawberry.ID | None
    request_id: str | None
    function_name: str | None
    endpoint: str | None
    stack_trace: str | None
    metadata: JSON | None

    @classmethod
    def of(cls, context: dict[str, Any]) -> ErrorOccurrence:
        user_id = context.get("userId")
        return cls(
            at=datetime.fromisoformat(context["at"]),
            user_id=strawberry.ID(user_id) if user_id else None,
            request_id=context.get("requestId"),
            function_name=context.get("functionName"),
            endpoint=context.get("endpoint"),
            stack_trace=context.get("stackTrace"),
            metadata=context.get("metadata"),
        )


@strawberry.type
class ErrorEvent:
    id: strawberry.ID
    fingerprint: str
    severity: Severity
    category: ErrorCategory
    message: str
    error_code: str | None
    user_facing: bool
    user_message: str | None
    status: ErrorStatus
    regressed: bool = strawberry.field(description="Was resolved, then happened again.")
    count: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    resolution_notes: str | None
    last_occurrence: ErrorOccurrence | None
    version: int = strawberry.field(
        description="Grows with every change of the group; keep the newest."
    )

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> ErrorEvent:
        """From services.error_events.message_of (a row, or a pub/sub message)."""
        last = message.get("last_occurrence")
        return cls(
            id=strawberry.ID(message["id"]),
            fingerprint=message["fingerprint"],
            severity=Severity(message["severity"]),
            category=ErrorCategory(message["category"]),
            message=message["message"],
            error_code=message["error_code"],
            user_facing=message["user_facing"],
            user_message=message["user_message"],
            status=ErrorStatus(message["status"]),
            regressed=message["regressed"],
            count=message["count"],
            first_seen=datetime.fromisoformat(message["first_seen"]),
            last_seen=datetime.fromisoformat(message["last_seen"]),
            resolved_at=_when(message["resolved_at"]),
            resolution_notes=message["resolution_notes"],
            last_occurrence=ErrorOccurrence.of(last) if last else None,
            version=message["version"],
        )


@strawberry.input
class ErrorEventFilter:
    severity: list[Severity] | None = None
    category: list[ErrorCategory] | None = None
    status: list[ErrorStatus] | None = None
    window: TimeWindow | None = strawberry.field(default=None, description="By lastSeen.")


@strawberry.type
class CountBySeverity:
    severity: Severity
    count: int


@strawberry.type
class CountByCategory:
    category: ErrorCategory
    count: int


@strawberry.type
class ErrorStats:
    window: TimeWindow
    occurrences: int
    critical: int
    unresolved_groups: int
    by_severity: list[CountBySeverity]
    by_category: list[CountByCategory]
    generation_failure_rate: float = strawberry.field(
        description="Failed / (completed + failed) generations in the window."
    )

    @classmethod
    def of(cls, data: stats.ErrorStats) -> ErrorStats:
        return copied(
            cls,
            data,
            by_severity=[CountBySeverity(severity=s, count=n) for s, n in data.by_severity],
            by_category=[CountByCategory(category=c, count=n) for c, n in data.by_category],
        )


@strawberry.type
class QueueStats:
    queued: int
    processing: int
    awaiting_approval: int
    oldest_queued_seconds: float | None

    @classmethod
    def of(cls, data: stats.QueueStats) -> QueueStats:
        return copied(cls, data)


@strawberry.type
class Notification:
    id: strawberry.ID
    kind: str
    severity: Severity
    title: str
    message: str
    generation_id: strawberry.ID | None
    action_label: str | None
    created_at: datetime

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Notification:
        """From services.notifications.message_of (a row, or a pub/sub message)."""
        generation_id = message["generation_id"]
        return cls(
            id=strawberry.ID(message["id"]),
            kind=message["kind"],
            severity=Severity(message["severity"]),
            title=message["title"],
            message=message["message"],
            generation_id=strawberry.ID(generation_id) if generation_id else None,
            action_label=message["action_label"],
            created_at=datetime.fromisoformat(message["created_at"]),
        )
