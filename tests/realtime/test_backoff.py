"""Reconnect waits: exponential, capped, jittered."""

from __future__ import annotations

from realtime.backoff import Backoff


def test_waits_double_within_half_to_whole_of_each_step():
    backoff = Backoff(first=0.1, cap=100.0)
    for failures, step in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2)):
        waits = [backoff.delay(failures) for _ in range(200)]
        assert all(step / 2 <= wait <= step for wait in waits), (failures, min(waits), max(waits))
        assert len(set(waits)) > 1  # jittered


def test_waits_never_exceed_the_cap_even_after_very_many_failures():
    backoff = Backoff(first=0.1, cap=5.0)
    waits = [backoff.delay(failures) for failures in (10, 100, 10_000)]
    assert all(2.5 <= wait <= 5.0 for wait in waits)
