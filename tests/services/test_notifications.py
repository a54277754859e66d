"""Notifications are created in the transaction of the change that causes them: stored and
published after commit, or neither."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from models.error_event import Severity
from models.generation import Generation
from models.notification import Notification
from services import generations, notifications
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput
from services.generations.failures import FailureCode
from services.unit_of_work import atomic


async def drain(mailbox, wait: float = 0.1) -> list[dict]:
    """Whatever the mailbox received so far."""
    seen: list[dict] = []

    async def collect() -> None:
        async for message in mailbox:
            seen.append(message)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), wait)
    return seen


async def test_a_failed_generation_tells_its_owner_about_the_refund(backend, make_user):
    user = await make_user(credits=5)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="x", num_outputs=2), load_catalogue()
    )
    async with backend.hub.subscribe(notifications.channel(user.id)) as mailbox:
        await generations.start(generation.id)
        await generations.fail(generation.id, FailureCode.PROVIDER_ERROR, "The provider failed.")
        await generations.fail(generation.id, FailureCode.PROVIDER_ERROR, "The provider failed.")
        published = await drain(mailbox)
    stored = await Notification.filter(generation_id=generation.id)
    assert len(stored) == 1 and len(published) == 1
    note = stored[0]
    assert (note.kind, note.severity, note.action_label) == (
        "GENERATION_FAILED",
        Severity.ERROR,
        "Try again",
    )
    assert note.message == "The provider failed. Your credits were refunded."
    assert published[0]["id"] == str(note.id)
    assert published[0]["generation_id"] == str(generation.id)


async def test_long_generations_announce_their_completion_and_short_ones_do_not(backend, make_user):
    user = await make_user(credits=5)
    catalogue = load_catalogue()
    quick = await generations.create_generation(user, NewGeneration(prompt="quick"), catalogue)
    slow = await generations.create_generation(user, NewGeneration(prompt="slow"), catalogue)
    await Generation.filter(id=slow.id).update(queued_at=datetime.now(UTC) - timedelta(minutes=2))
    for generation in (quick, slow):
        await generations.start(generation.id)
        output = StoredOutput(0, f"{user.id}/{generation.id}/0.png", "image/png", 1)
        await generations.complete(generation.id, [output], "local")
    assert not await Notification.filter(generation_id=quick.id).exists()
    note = await Notification.get(generation_id=slow.id)
    assert (note.kind, note.severity) == ("GENERATION_COMPLETED", Severity.INFO)
    assert "slow" in note.message and "seconds" in note.message


async def test_a_rolled_back_change_neither_stores_nor_publishes(backend, make_user):
    user = await make_user()

    class Abort(Exception):
        pass

    async with backend.hub.subscribe(notifications.channel(user.id)) as mailbox:
        with pytest.raises(Abort):
            async with atomic():
                await notifications.notify(
                    user.id, kind="TEST", severity=Severity.INFO, title="t", message="m"
                )
                raise Abort
        assert await drain(mailbox) == []
    assert not await Notification.filter(user_id=user.id).exists()


async def test_listing_pages_through_ones_own_notifications(backend, make_user):
    user, other = await make_user(), await make_user()
    for n in range(5):
        await notifications.notify(
            user.id, kind="TEST", severity=Severity.INFO, title=f"t{n}", message="m"
        )
    await notifications.notify(
        other.id, kind="TEST", severity=Severity.INFO, title="x", message="m"
    )
    page = await notifications.list_notifications(user.id, first=3)
    assert [n.title for n in page.items] == ["t4", "t3", "t2"] and page.has_next
    rest = await notifications.list_notifications(
        user.id, first=3, after=page.cursor_of(page.items[-1])
    )
    assert [n.title for n in rest.items] == ["t1", "t0"] and not rest.has_next
