"""Mailbox: newest message per key, never older over newer, keys in arrival order, close ends."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

from hypothesis import example, given, settings
from hypothesis import strategies as st

from realtime.mailbox import Mailbox

CHANNEL = "kiln:test:mailbox"
END = "__end__"
TIMEOUT = 5.0


def box_for(*channels: str) -> Mailbox:
    return Mailbox(channels or (CHANNEL,))


async def take(it, n: int) -> list[dict]:
    """The next n messages from one iterator of a mailbox; a hang fails the test."""
    async with asyncio.timeout(TIMEOUT):
        return [await anext(it) for _ in range(n)]


async def drain_until_end(box: Mailbox) -> list[dict]:
    """Everything up to (not including) the END marker, which the caller puts last."""
    got: list[dict] = []
    async with asyncio.timeout(TIMEOUT):
        async for message in box:
            if message.get("id") == END:
                return got
            got.append(message)
    raise AssertionError("the mailbox ended before the END marker")


def msg(id_: str, version: int, **extra) -> dict:
    return {"id": id_, "version": version, **extra}


async def delivered(*messages: dict) -> list[dict]:
    """What a consumer gets from a mailbox on CHANNEL given `messages` in this order before it
    reads."""
    box = box_for()
    for message in messages:
        box.put(CHANNEL, message)
    box.put(CHANNEL, {"id": END})
    return await drain_until_end(box)


async def test_keeps_only_newest_message_per_id():
    assert await delivered(msg("a", 1), msg("a", 2), msg("a", 3)) == [msg("a", 3)]


async def test_older_version_never_replaces_newer_pending_one():
    completed = msg("a", 5, status="COMPLETED")
    older = [msg("a", 3, status="PROCESSING"), msg("a", 4, status="PROCESSING")]
    assert await delivered(completed, *older) == [completed]


async def test_messages_without_id_are_keyed_by_channel():
    box = box_for("c1", "c2")
    box.put("c1", {"version": 1, "balance": 10})
    box.put("c2", {"version": 1, "balance": 99})
    box.put("c1", {"version": 2, "balance": 20})
    box.put("c1", {"version": 1, "balance": 5})  # older: ignored
    box.put("c1", {"id": END})
    assert await drain_until_end(box) == [
        {"version": 1, "balance": 99},
        {"version": 2, "balance": 20},
    ]


async def test_same_id_on_two_channels_is_one_key():
    box = box_for("gen", "user")
    box.put("gen", msg("a", 1))
    box.put("user", msg("a", 2))
    box.put("gen", msg("a", 1))
    box.put("gen", {"id": END})
    assert await drain_until_end(box) == [msg("a", 2)]


async def test_keys_come_out_in_arrival_order():
    got = await delivered(msg("c", 1), msg("a", 1), msg("b", 1))
    assert [m["id"] for m in got] == ["c", "a", "b"]


async def test_newer_message_moves_its_key_to_the_back():
    got = await delivered(msg("a", 1), msg("b", 1), msg("a", 2))
    assert got == [msg("b", 1), msg("a", 2)]


async def test_rejected_older_message_does_not_reorder_keys():
    got = await delivered(msg("a", 2), msg("b", 1), msg("a", 1))
    assert got == [msg("a", 2), msg("b", 1)]


async def test_consumer_waits_for_a_message_put_later():
    box = box_for()
    it = aiter(box)
    pending = asyncio.ensure_future(take(it, 1))
    await asyncio.sleep(0)
    assert not pending.done()
    box.put(CHANNEL, msg("a", 1))
    assert await pending == [msg("a", 1)]


async def test_close_ends_a_waiting_consumer():
    box = box_for()
    received = []

    async def consume():
        async for message in box:
            received.append(message)

    task = asyncio.create_task(consume())
    box.put(CHANNEL, msg("a", 1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    box.close()
    await asyncio.wait_for(task, TIMEOUT)
    assert received == [msg("a", 1)]


async def test_close_while_consumer_is_mid_drain_delivers_the_rest_then_ends():
    box = box_for()
    box.put(CHANNEL, msg("a", 1))
    box.put(CHANNEL, msg("b", 1))
    it = aiter(box)
    assert await take(it, 1) == [msg("a", 1)]
    box.close()
    async with asyncio.timeout(TIMEOUT):
        rest = [m async for m in it]
    assert rest == [msg("b", 1)]


async def test_close_on_empty_mailbox_ends_iteration_at_once():
    box = box_for()
    box.close()
    async with asyncio.timeout(TIMEOUT):
        assert [m async for m in box] == []


async def test_close_with_pending_messages_drains_then_ends():
    box = box_for()
    box.put(CHANNEL, msg("a", 1))
    box.put(CHANNEL, msg("b", 1))
    box.close()
    async with asyncio.timeout(2):
        received = [m async for m in box]
    assert received == [msg("a", 1), msg("b", 1)]


async def test_older_version_after_newer_was_delivered_is_not_delivered():
    box = box_for()
    it = aiter(box)
    box.put(CHANNEL, msg("a", 2, status="COMPLETED"))
    assert await take(it, 1) == [msg("a", 2, status="COMPLETED")]
    box.put(CHANNEL, msg("a", 1, status="PROCESSING"))
    box.put(CHANNEL, {"id": END})
    assert await take(it, 1) == [{"id": END}]


# ---- property tests ----------------------------------------------------------------------
# A run is a list of operations: ("a", 3) puts {"id": "a", "version": 3}; None lets a
# concurrent consumer run (await asyncio.sleep(0)). The consumer stops at the END marker,
# which is put after everything else, so it sees all that the mailbox delivers.

IDS = st.sampled_from(["a", "b", "c", "d"])


async def run_ops(ops: list[tuple[str, int] | None]) -> dict[str, list[int]]:
    box = box_for()
    seen: dict[str, list[int]] = defaultdict(list)

    async def consume() -> None:
        async for message in box:
            if message["id"] == END:
                return
            seen[message["id"]].append(message["version"])

    consumer = asyncio.create_task(consume())
    for op in ops:
        if op is None:
            await asyncio.sleep(0)
        else:
            box.put(CHANNEL, msg(*op))
    box.put(CHANNEL, {"id": END, "version": 0})
    await asyncio.wait_for(consumer, TIMEOUT)
    return dict(seen)


def check_versions(ops: list[tuple[str, int] | None], seen: dict[str, list[int]]) -> None:
    put: dict[str, set[int]] = defaultdict(set)
    for op in ops:
        if op is not None:
            put[op[0]].add(op[1])
    assert set(seen) == set(put)
    for id_, versions in seen.items():
        assert all(a < b for a, b in itertools.pairwise(versions)), (id_, versions)
        assert versions[-1] == max(put[id_]), (id_, versions)
        assert set(versions) <= put[id_]


@st.composite
def versions_per_id(draw) -> dict[str, list[int]]:
    ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    return {
        id_: draw(st.lists(st.integers(1, 50), min_size=1, max_size=8, unique=True)) for id_ in ids
    }


@st.composite
def interleaving(draw, *, in_order: bool, consumer_runs: bool) -> list[tuple[str, int] | None]:
    """Puts of every id's versions, interleaved across ids; within an id either in increasing
    order or in any order; with or without points where the consumer runs."""
    queues = {
        id_: sorted(vs) if in_order else draw(st.permutations(vs))
        for id_, vs in draw(versions_per_id()).items()
    }
    queues = {k: list(v) for k, v in queues.items()}
    ops: list[tuple[str, int] | None] = []
    while any(queues.values()):
        if consumer_runs and draw(st.booleans()):
            ops.append(None)
        id_ = draw(st.sampled_from(sorted(k for k, v in queues.items() if v)))
        ops.append((id_, queues[id_].pop(0)))
    return ops


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)


@PROPERTY_SETTINGS
@given(interleaving(in_order=False, consumer_runs=False))
async def test_property_slow_consumer_sees_only_the_max_version_per_id(ops):
    seen = await run_ops(ops)
    check_versions(ops, seen)
    assert all(len(versions) == 1 for versions in seen.values())


@PROPERTY_SETTINGS
@given(interleaving(in_order=True, consumer_runs=True))
async def test_property_in_order_publishes_give_increasing_versions_ending_at_max(ops):
    check_versions(ops, await run_ops(ops))


@PROPERTY_SETTINGS
@given(interleaving(in_order=False, consumer_runs=True))
@example([("a", 2), None, ("a", 1)])
async def test_property_any_interleaving_gives_increasing_versions_ending_at_max(ops):
    check_versions(ops, await run_ops(ops))


async def test_a_state_the_subscriber_sent_itself_drops_what_is_not_newer():
    box = box_for()
    box.put(CHANNEL, msg("a", 2))  # queued, then the subscriber's own read finds version 3
    box.put(CHANNEL, msg("b", 4))  # queued, newer than the subscriber's own read of b
    box.sent("a", 3)
    box.sent("b", 3)
    box.put(CHANNEL, msg("a", 3))
    box.put(CHANNEL, msg("a", 4))
    box.put(CHANNEL, {"id": END})
    assert await drain_until_end(box) == [msg("b", 4), msg("a", 4)]


async def test_a_queued_state_as_new_as_the_subscribers_own_read_is_not_sent_again():
    """The message of a change arrives before the subscriber's first read, which then finds
    that same version: the subscriber has sent it already (a duplicate version 5 then 5 was
    seen by the cancel-then-retry e2e test)."""
    box = box_for()
    box.put(CHANNEL, msg("a", 5))
    box.sent("a", 5)
    box.put(CHANNEL, {"id": END})
    assert await drain_until_end(box) == []
