"""The re-read a hub makes when its pub/sub connection comes back: the current state of what
its subscribers follow, as the messages a change publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.generation import Generation
from realtime import channels
from realtime.catch_up import MARGIN, current_states
from services import credits, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput

CATALOGUE = load_catalogue()


async def completed(user, prompt: str) -> Generation:
    generation = await generations.create_generation(user, NewGeneration(prompt=prompt), CATALOGUE)
    await generations.start(generation.id)
    key = f"{user.id}/{generation.id}/0.png"
    done = await generations.complete(
        generation.id, [StoredOutput(0, key, "image/png", 1)], "local"
    )
    assert done is not None
    return done


async def message_of(generation_id) -> dict:
    row = await Generation.get(id=generation_id)
    return generations.snapshot(row, await generations.outputs_of(generation_id))


async def test_reads_back_every_followed_state_as_its_message(backend, make_user):
    user, other = await make_user(credits=20), await make_user(credits=20)
    lost_at = datetime.now(UTC)
    long_done = await completed(user, "ended long before the loss")
    await Generation.filter(id=long_done.id).update(completed_at=lost_at - 2 * MARGIN)
    just_done = await completed(user, "ended during the loss")
    waiting = await generations.create_generation(user, NewGeneration(prompt="queued"), CATALOGUE)
    elsewhere = await generations.create_generation(other, NewGeneration(prompt="x"), CATALOGUE)

    followed = [
        channels.generation(long_done.id),
        channels.user_generations(user.id),
        channels.user_credits(user.id),
        channels.user_notifications(user.id),
        channels.admin_errors(),
    ]
    states = await current_states(followed, lost_at)

    by_channel: dict[str, list[dict]] = {}
    for channel, message in states:
        by_channel.setdefault(channel, []).append(message)
    assert set(by_channel) == set(followed[:3])
    # A generation's own channel: that generation, final or not, with its outputs.
    assert by_channel[followed[0]] == [await message_of(long_done.id)]
    assert by_channel[followed[0]][0]["outputs"]
    # The user's generations that may have changed: not the one that ended long before,
    # nor anyone else's.
    mine = sorted(by_channel[followed[1]], key=lambda m: m["id"])
    expected = [await message_of(just_done.id), await message_of(waiting.id)]
    assert mine == sorted(expected, key=lambda m: m["id"])
    assert str(elsewhere.id) not in {m["id"] for m in mine}
    # The balance, as the subscription's first read gives it.
    assert by_channel[followed[2]] == [(await credits.get_balance(user.id)).to_message()]


async def test_nothing_followed_reads_nothing(backend):
    assert await current_states([], datetime.now(UTC) - timedelta(hours=1)) == []
