"""Error groups: grouping by fingerprint, atomic counting under concurrency (with the hourly
counter), resolve / regress / ignore, and recording that never raises nor blocks."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from models.error_event import ErrorCategory, ErrorEvent, ErrorHourlyCount, ErrorStatus, Severity
from realtime import channels
from services import error_events
from services.error_events import Occurrence, fingerprint, record
from services.errors import BadUserInput, NotFound
from services.stats import hour_of
from services.unit_of_work import atomic


def unique(text: str) -> str:
    """A message no other test records (the database lives for the whole session). Letters
    only, so normalisation keeps it apart."""
    tag = "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:12])
    return f"{text} [{tag}]"


async def group_of(category: ErrorCategory, code: str | None, message: str) -> ErrorEvent:
    return await ErrorEvent.get(fingerprint=fingerprint(category, code, message))


def test_messages_differing_only_in_volatile_parts_share_a_fingerprint():
    a = "User 3f2b7a4c-1d2e-4f5a-8b9c-0d1e2f3a4b5c hit https://cdn.x.io/a.png after 12 tries"
    b = "User 00000000-1111-2222-3333-444444444444 hit https://cdn.y.io/b.webp after 3 tries"
    assert fingerprint(ErrorCategory.API, "E", a) == fingerprint(ErrorCategory.API, "E", b)
    assert fingerprint(ErrorCategory.API, "E", "mail to a@b.example failed") == fingerprint(
        ErrorCategory.API, "E", "mail to someone.else@c.example failed"
    )
    assert fingerprint(ErrorCategory.API, "E", a) != fingerprint(ErrorCategory.API, "F", a)


async def test_occurrences_differing_only_in_an_id_group_together(backend):
    base = unique("Generation failed for job")
    await record(Occurrence(Severity.ERROR, ErrorCategory.GENERATION, f"{base} 1017", "E_ID"))
    await record(Occurrence(Severity.ERROR, ErrorCategory.GENERATION, f"{base} 2048", "E_ID"))
    await record(Occurrence(Severity.ERROR, ErrorCategory.GENERATION, f"{base} 7", "E_OTHER"))
    same = await group_of(ErrorCategory.GENERATION, "E_ID", f"{base} 1")
    other = await group_of(ErrorCategory.GENERATION, "E_OTHER", f"{base} 1")
    assert (same.count, other.count) == (2, 1)
    assert same.id != other.id
    # The group keeps the first message; the last occurrence's context is the newest.
    assert same.message == f"{base} 1017"


async def test_concurrent_recordings_lose_no_increment(backend):
    message = unique("Upstream timed out")

    def occurrence(n: int) -> Occurrence:
        return Occurrence(
            Severity.CRITICAL,
            ErrorCategory.SYSTEM,
            f"{message} after {n} ms",
            error_code="UPSTREAM_TIMEOUT",
            request_id=f"req-{n}",
            metadata={"n": n},
        )

    await asyncio.gather(*[record(occurrence(n)) for n in range(200)])
    await error_events.flush()
    group = await group_of(ErrorCategory.SYSTEM, "UPSTREAM_TIMEOUT", f"{message} after 1 ms")
    assert group.count == 200
    assert group.version == 200
    assert await ErrorEvent.filter(fingerprint=group.fingerprint).count() == 1
    buckets = await ErrorHourlyCount.filter(fingerprint=group.fingerprint)
    # Every occurrence landed in this hour or (when the test straddles an hour) the next one.
    assert sum(b.count for b in buckets) == 200
    assert {b.severity for b in buckets} == {Severity.CRITICAL}
    assert all(b.hour == hour_of(b.hour) for b in buckets)
    assert group.last_occurrence is not None
    assert group.last_occurrence["requestId"].startswith("req-")


async def test_a_resolved_group_reopens_as_a_regression(backend):
    occurrence = Occurrence(Severity.ERROR, ErrorCategory.PAYMENT, unique("Card declined"), "DECL")
    await record(occurrence)
    group = await group_of(ErrorCategory.PAYMENT, "DECL", occurrence.message)

    resolved = await error_events.resolve(group.id, "Fixed by retrying the charge")
    assert resolved.status is ErrorStatus.RESOLVED
    assert resolved.resolution_notes == "Fixed by retrying the charge"
    assert resolved.resolved_at is not None
    assert resolved.version == group.version + 1

    await record(occurrence)
    group = await ErrorEvent.get(id=group.id)
    assert (group.status, group.regressed, group.count) == (ErrorStatus.UNRESOLVED, True, 2)
    # The notes stay for whoever picks the regression up.
    assert group.resolution_notes == "Fixed by retrying the charge"

    # Resolving again clears the regression flag until the next occurrence.
    assert (await error_events.resolve(group.id)).regressed is False


async def test_an_ignored_group_keeps_counting_but_stays_ignored(backend):
    occurrence = Occurrence(Severity.WARNING, ErrorCategory.WEBHOOK, unique("Bad signature"), "SIG")
    await record(occurrence)
    group = await group_of(ErrorCategory.WEBHOOK, "SIG", occurrence.message)
    assert (await error_events.ignore(group.id)).status is ErrorStatus.IGNORED
    for _ in range(3):
        await record(occurrence)
    group = await ErrorEvent.get(id=group.id)
    assert (group.status, group.regressed, group.count) == (ErrorStatus.IGNORED, False, 4)


async def test_resolving_an_unknown_group_or_with_huge_notes_is_refused(backend):
    with pytest.raises(NotFound):
        await error_events.resolve(10**12)
    with pytest.raises(NotFound):
        await error_events.ignore(10**12)
    await record(Occurrence(Severity.INFO, ErrorCategory.USER_ACTION, unique("Odd input"), "ODD"))
    group = await ErrorEvent.filter(error_code="ODD").order_by("-id").first()
    assert group is not None
    with pytest.raises(BadUserInput):
        await error_events.resolve(group.id, "x" * 5000)


async def test_an_error_inside_a_rolled_back_transaction_is_still_recorded(backend):
    message = unique("Constraint violated")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with atomic():
            await record(Occurrence(Severity.ERROR, ErrorCategory.DATABASE, message, "DB"))
            raise Boom
    await error_events.flush()
    assert (await group_of(ErrorCategory.DATABASE, "DB", message)).count == 1


async def test_recording_never_raises(backend, monkeypatch, caplog):
    async def broken(occurrence, at):
        raise RuntimeError("database is gone")

    monkeypatch.setattr(error_events, "_write", broken)
    await record(Occurrence(Severity.ERROR, ErrorCategory.SYSTEM, unique("Lost"), "LOST"))
    assert "could not record error event" in caplog.text


async def test_a_slow_database_does_not_hold_up_the_caller(backend, monkeypatch):
    message = unique("Slow disk")
    real_write = error_events._write

    async def slow(occurrence, at):
        await asyncio.sleep(0.5)
        await real_write(occurrence, at)

    monkeypatch.setattr(error_events, "_write", slow)
    monkeypatch.setattr(backend.settings, "error_record_wait_seconds", 0.05)
    monkeypatch.setattr("services.error_events.get_settings", lambda: backend.settings)
    started = time.perf_counter()
    await record(Occurrence(Severity.ERROR, ErrorCategory.SYSTEM, message, "SLOW"))
    assert time.perf_counter() - started < 0.4
    assert not await ErrorEvent.filter(
        fingerprint=fingerprint(ErrorCategory.SYSTEM, "SLOW", message)
    )
    await error_events.flush()  # the write was not cancelled, only no longer waited for
    assert (await group_of(ErrorCategory.SYSTEM, "SLOW", message)).count == 1


async def test_each_recording_publishes_the_group_state_for_admins(backend):
    occurrence = Occurrence(Severity.ERROR, ErrorCategory.VIDEO, unique("Encoder crashed"), "ENC")
    async with backend.hub.subscribe(channels.admin_errors()) as mailbox:
        await record(occurrence)
        await record(occurrence)
        group = await group_of(ErrorCategory.VIDEO, "ENC", occurrence.message)
        await error_events.resolve(group.id, "known")
        seen: list[dict] = []

        async def collect() -> None:
            async for message in mailbox:
                if message["id"] == str(group.id):
                    seen.append(message)
                    if message["status"] == "RESOLVED":
                        return

        await asyncio.wait_for(collect(), 5)
    # A slow reader may only get the newest state; versions only grow.
    assert seen[-1]["count"] == 2 and seen[-1]["version"] == 3
    assert [m["version"] for m in seen] == sorted(m["version"] for m in seen)
