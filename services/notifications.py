"""Notifications: messages meant for one user. Each is created in the transaction of the change
that causes it (a failed generation's refund, a long generation finishing), published on the
user's channel after commit, and kept so a reconnecting client can list what it missed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from models.error_event import Severity
from models.generation import Generation
from models.notification import Notification
from realtime import channels
from services.events import publish_after_commit
from services.pagination import Page, newest_first_by_id
from services.unit_of_work import atomic
from settings import get_settings

GENERATION_FAILED = "GENERATION_FAILED"
GENERATION_COMPLETED = "GENERATION_COMPLETED"


def channel(user_id: uuid.UUID | str) -> str:
    return channels.user_notifications(user_id)


async def notify(
    user_id: uuid.UUID,
    *,
    kind: str,
    severity: Severity,
    title: str,
    message: str,
    generation_id: uuid.UUID | None = None,
    action_label: str | None = None,
) -> Notification:
    """Store a notification and stream it once the enclosing transaction commits."""
    async with atomic():
        notification = await Notification.create(
            user_id=user_id,
            kind=kind,
            severity=severity,
            title=title[:200],
            message=message,
            generation_id=generation_id,
            action_label=action_label,
        )
        publish_after_commit(channel(user_id), message_of(notification))
        return notification


async def generation_failed(generation: Generation) -> Notification:
    """Tells the owner what went wrong and that the credits came back: the generation's own
    error message, which says both (services.generations.failures.user_message)."""
    return await notify(
        generation.user_id,
        kind=GENERATION_FAILED,
        severity=Severity.ERROR,
        title="Your generation failed",
        message=generation.error_message or "",
        generation_id=generation.id,
        action_label="Try again",
    )


def completion_noticed_if_queued_before(finished: datetime) -> datetime:
    """A generation finishing at `finished` tells its owner it is ready (generation_completed)
    only when it was queued at or before this: long enough that they may have looked away."""
    return finished - timedelta(seconds=get_settings().long_generation_notify_seconds)


async def generation_completed(generation: Generation) -> Notification | None:
    """Only for generations long enough that the user may have looked away."""
    finished = generation.completed_at or datetime.now(UTC)
    if generation.queued_at > completion_noticed_if_queued_before(finished):
        return None
    waited = (finished - generation.queued_at).total_seconds()
    prompt = generation.prompt if len(generation.prompt) <= 60 else generation.prompt[:57] + "..."
    return await notify(
        generation.user_id,
        kind=GENERATION_COMPLETED,
        severity=Severity.INFO,
        title="Your generation is ready",
        message=f"“{prompt}” finished after {waited:.0f} seconds.",
        generation_id=generation.id,
        action_label="View",
    )


async def list_notifications(
    user_id: uuid.UUID, *, first: int, after: str | None = None
) -> Page[Notification]:
    """The user's own, newest first; the cursor carries the id, which only grows."""
    query = Notification.filter(user_id=user_id)
    return await newest_first_by_id(query, first=first, after=after)


def message_of(notification: Notification) -> dict[str, Any]:
    """As published to the user's channel (JSON-safe). Each notification is its own key with
    one version, so a slow client's mailbox keeps every one of them."""
    return {
        "id": str(notification.id),
        "version": 1,
        "kind": notification.kind,
        "severity": notification.severity.value,
        "title": notification.title,
        "message": notification.message,
        "generation_id": str(notification.generation_id) if notification.generation_id else None,
        "action_label": notification.action_label,
        "created_at": notification.created_at.isoformat(),
    }
