"""Channel names, and what a channel of states carries (read back by realtime/catch_up.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from realtime import channels


@pytest.fixture
def namespace() -> Iterator[str]:
    channels.configure("kiln-test-ns")
    try:
        yield "kiln-test-ns"
    finally:
        channels.configure("kiln")


def test_every_channel_of_state_is_read_back(namespace):
    gid, uid = uuid.uuid4(), uuid.uuid4()
    assert channels.of_state(channels.generation(gid)) == (channels.GENERATION, gid)
    assert channels.of_state(channels.user_generations(uid)) == (channels.USER_GENERATIONS, uid)
    assert channels.of_state(channels.user_credits(uid)) == (channels.USER_CREDITS, uid)


def test_channels_of_events_and_other_names_carry_no_state(namespace):
    uid = uuid.uuid4()
    assert channels.of_state(channels.user_notifications(uid)) is None
    assert channels.of_state(channels.admin_errors()) is None
    assert channels.of_state(f"kiln:generation:{uuid.uuid4()}") is None  # another namespace
    assert channels.of_state(f"{namespace}:generation:not-an-id") is None
    assert channels.of_state(f"{namespace}:user:{uid}:generations:extra") is None
