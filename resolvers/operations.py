"""What an admin on call sees (error events, stats, the queue) and what each user is told
(notifications). schema.build merges these into the schema's Query, Mutation and Subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from models.error_event import Severity
from realtime import channels
from realtime.hub import get_hub
from resolvers.ids import parse_int_id
from resolvers.paging import DEFAULT_FIRST, First, page_size
from schema.context import Context
from schema.operations_types import (
    ErrorEvent,
    ErrorEventFilter,
    ErrorStats,
    Notification,
    QueueStats,
)
from schema.permissions import IsAdmin, IsAuthenticated
from schema.types import Connection
from services import error_events, notifications, stats
from services.stats import TimeWindow


def _event_id(value: str) -> int:
    return parse_int_id(value, message="Error event not found.")


@strawberry.type
class OperationsQuery:
    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Error groups by last seen, newest first (admin only).",
    )
    async def error_events(
        self,
        first: First = DEFAULT_FIRST,
        after: str | None = None,
        filter: ErrorEventFilter | None = None,
    ) -> Connection[ErrorEvent]:
        filter = filter or ErrorEventFilter()
        page = await error_events.list_events(
            first=page_size(first),
            after=after,
            severities=filter.severity,
            categories=filter.category,
            statuses=filter.status,
            window=filter.window,
        )
        return Connection.of(
            page, lambda row: ErrorEvent.from_message(error_events.message_of(row))
        )

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Occurrences and failure rate over a window, from hourly counters.",
    )
    async def error_stats(self, window: TimeWindow) -> ErrorStats:
        return ErrorStats.of(await stats.error_stats(window))

    @strawberry.field(permission_classes=[IsAdmin])
    async def queue_stats(self) -> QueueStats:
        return QueueStats.of(await stats.queue_stats())

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="The caller's notifications, newest first.",
    )
    async def notifications(
        self, info: Info[Context, None], first: First = DEFAULT_FIRST, after: str | None = None
    ) -> Connection[Notification]:
        user = await info.context.require_user()
        page = await notifications.list_notifications(user.id, first=page_size(first), after=after)
        return Connection.of(
            page, lambda row: Notification.from_message(notifications.message_of(row))
        )


@strawberry.type
class OperationsMutation:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin only. The next occurrence reopens the group as a regression.",
    )
    async def resolve_error_event(self, id: strawberry.ID, notes: str | None = None) -> ErrorEvent:
        event = await error_events.resolve(_event_id(id), notes)
        return ErrorEvent.from_message(error_events.message_of(event))

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin only. The group keeps counting but stays ignored.",
    )
    async def ignore_error_event(self, id: strawberry.ID) -> ErrorEvent:
        event = await error_events.ignore(_event_id(id))
        return ErrorEvent.from_message(error_events.message_of(event))


@strawberry.type
class OperationsSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Messages meant for the caller, as they are created.",
    )
    async def notifications(self, info: Info[Context, None]) -> AsyncGenerator[Notification, None]:
        user = await info.context.require_user()
        async with get_hub().subscribe(notifications.channel(user.id)) as mailbox:
            async for message in mailbox:
                yield Notification.from_message(message)

    @strawberry.subscription(
        permission_classes=[IsAdmin],
        description="Each error group's new state after every occurrence or status change.",
    )
    async def error_event_stream(
        self, min_severity: Severity | None = Severity.WARNING
    ) -> AsyncGenerator[ErrorEvent, None]:
        minimum = Severity(min_severity or Severity.WARNING)
        async with get_hub().subscribe(channels.admin_errors()) as mailbox:
            # The mailbox already drops a group state older than one it delivered.
            async for message in mailbox:
                if error_events.at_least(Severity(message["severity"]), minimum):
                    yield ErrorEvent.from_message(message)
