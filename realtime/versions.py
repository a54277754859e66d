"""The one rule every subscriber applies to what it is sent: drop what is not newer.

A subscription's states may come from several places: its first read of the database,
messages published by any process (in any order across processes), and the re-read its hub
makes when its pub/sub connection comes back (realtime/catch_up.py). Each state carries the
version its row had, bumped by every change in the statement that made it, so a subscriber
that keeps the newest version it accepted per key can take them all and never go back."""

from __future__ import annotations


def newer(last: dict[str, int], key: str, version: int) -> bool:
    """True when `version` is newer than the last one accepted for `key` (or none was): it is
    recorded as the last, and the state is to be sent. False: drop it, a state as new or newer
    is already sent or on its way."""
    if key in last and last[key] >= version:
        return False
    last[key] = version
    return True
