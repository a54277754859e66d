from __future__ import annotations

import asyncio

from models.error_event import ErrorCategory, ErrorEvent, ErrorStatus, Severity
from services.error_events import Occurrence, fingerprint, normalise, record


def test_volatile_parts_are_normalised_away():
    a = normalise(
        "Generation 3f2b7a4c-1d2e-4f5a-8b9c-0d1e2f3a4b5c failed after 12.5s at "
        "https://x.example/a?b=1"
    )
    b = normalise(
        "Generation 00000000-1111-2222-3333-444444444444 failed after 3s at https://y.example/other"
    )
    assert a == b
    assert fingerprint(ErrorCategory.API, "X", "user 12 failed") == fingerprint(
        ErrorCategory.API, "X", "user 99 failed"
    )
    assert fingerprint(ErrorCategory.API, "X", "m") != fingerprint(ErrorCategory.API, "Y", "m")
    assert fingerprint(ErrorCategory.API, "X", "m") != fingerprint(ErrorCategory.SYSTEM, "X", "m")


async def test_occurrences_group_and_count_atomically(backend):
    def occurrence(n: int) -> Occurrence:
        return Occurrence(
            Severity.ERROR,
            ErrorCategory.SYSTEM,
            f"disk {n} full",
            error_code="DISK_FULL",
            request_id=f"r{n}",
        )

    await asyncio.gather(*[record(occurrence(n)) for n in range(40)])
    event = await ErrorEvent.get(
        fingerprint=fingerprint(ErrorCategory.SYSTEM, "DISK_FULL", "disk 1 full")
    )
    assert event.count == 40
    assert event.last_occurrence is not None and event.last_occurrence["requestId"].startswith("r")


async def test_a_resolved_group_that_happens_again_regresses(backend):
    occurrence = Occurrence(Severity.WARNING, ErrorCategory.WEBHOOK, "bad sig", "BAD_SIG")
    await record(occurrence)
    key = fingerprint(ErrorCategory.WEBHOOK, "BAD_SIG", "bad sig")
    await ErrorEvent.filter(fingerprint=key).update(status=ErrorStatus.RESOLVED)
    await record(occurrence)
    event = await ErrorEvent.get(fingerprint=key)
    assert (event.status, event.regressed, event.count) == (ErrorStatus.UNRESOLVED, True, 2)
    await ErrorEvent.filter(fingerprint=key).update(status=ErrorStatus.IGNORED, regressed=False)
    await record(occurrence)
    event = await ErrorEvent.get(fingerprint=key)
    assert (event.status, event.regressed, event.count) == (ErrorStatus.IGNORED, False, 3)
