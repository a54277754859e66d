"""The one "drop what is not newer" rule of subscribers."""

from __future__ import annotations

from realtime.versions import newer


def test_a_first_version_is_newer_even_zero():
    last: dict[str, int] = {}
    assert newer(last, "balance", 0)
    assert last == {"balance": 0}


def test_only_a_greater_version_passes_and_is_recorded():
    last = {"a": 3}
    assert not newer(last, "a", 3)
    assert not newer(last, "a", 2)
    assert last == {"a": 3}
    assert newer(last, "a", 4)
    assert last == {"a": 4}


def test_keys_are_independent():
    last = {"a": 5}
    assert newer(last, "b", 1)
    assert last == {"a": 5, "b": 1}
