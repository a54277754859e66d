"""After-commit publishing: the messages of one change leave together, in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from realtime import channels
from realtime.hub import InProcessHub, get_hub, set_hub
from services import generations
from services.catalogue import load_catalogue
from services.events import publish_after_commit
from services.generations import NewGeneration, StoredOutput
from services.unit_of_work import after_commit, atomic, effects_only

CATALOGUE = load_catalogue()


class RecordingHub(InProcessHub):
    """Records every call; `batches` says whether it sends a batch in one call (else the
    hub's default publish_many sends each message)."""

    def __init__(self, *, batches: bool, failing: str | None = None) -> None:
        super().__init__()
        self.calls: list[Any] = []
        self.failing = failing
        self.batches = batches

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.calls.append(("publish", channel))
        if channel == self.failing:
            raise ConnectionError("lost")
        await super().publish(channel, message)

    async def publish_many(self, publications: list[tuple[str, dict[str, Any]]]) -> None:
        if not self.batches:
            await super().publish_many(publications)
            return
        self.calls.append(("many", [channel for channel, _ in publications]))


@pytest.fixture
def hub_of(backend) -> Iterator[Any]:
    previous = get_hub()

    def use(hub: RecordingHub) -> RecordingHub:
        set_hub(hub)
        return hub

    yield use
    set_hub(previous)


async def test_a_completion_publishes_in_one_batch(make_user, hub_of):
    user = await make_user()
    generation = await generations.create_generation(user, NewGeneration(prompt="a fox"), CATALOGUE)
    hub = hub_of(RecordingHub(batches=True))
    await generations.start(generation.id)
    key = f"{user.id}/{generation.id}/0.png"
    await generations.complete(generation.id, [StoredOutput(0, key, "image/png", 1)], "local")
    expected = [channels.generation(generation.id), channels.user_generations(user.id)]
    assert hub.calls == [
        ("many", expected),  # PROCESSING
        ("many", [*expected, channels.user_credits(user.id)]),  # COMPLETED and the capture
    ]


async def test_only_adjacent_messages_share_a_batch(backend, hub_of):
    """An effect registered between two publishes keeps its place in the order."""
    hub = hub_of(RecordingHub(batches=True))
    ran: list[str] = []

    async def effect() -> None:
        ran.append(f"effect after {len(hub.calls)} publish calls")

    async with atomic():
        publish_after_commit("a", {"n": 1})
        publish_after_commit("b", {"n": 2})
        after_commit(effect)
        publish_after_commit("c", {"n": 3})
    assert hub.calls == [("many", ["a", "b"]), ("publish", "c")]
    assert ran == ["effect after 1 publish calls"]


async def test_without_a_batched_send_each_message_is_sent_and_one_failure_skips_none(
    backend, hub_of
):
    hub = hub_of(RecordingHub(batches=False, failing="b"))
    async with effects_only():
        for channel in ("a", "b", "c"):
            publish_after_commit(channel, {})
    assert hub.calls == [("publish", "a"), ("publish", "b"), ("publish", "c")]


async def test_a_rolled_back_change_publishes_nothing(backend, hub_of):
    hub = hub_of(RecordingHub(batches=True))
    with pytest.raises(RuntimeError):
        async with atomic():
            publish_after_commit("a", {})
            publish_after_commit("b", {})
            raise RuntimeError("boom")
    assert hub.calls == []
