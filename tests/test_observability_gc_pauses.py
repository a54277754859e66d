"""Garbage-collection pauses are measured (observability/gc_pauses.py): each collection is
noted by the gc callback and reaches the metrics when drained, by the /metrics endpoint or by
the event loop's drainer, never from inside the collection."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from observability import gc_pauses, metrics
from tests.support.app import app_client, parse, value


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only a collection frees it


@pytest.fixture
def measured() -> Iterator[None]:
    gc_pauses.install()
    try:
        yield
    finally:
        gc_pauses.uninstall()


def samples() -> dict[str, float]:
    text = metrics.render().decode()
    parsed = parse(text)
    return {
        "pauses": value(parsed, "kiln_gc_pause_seconds_count", generation="2"),
        "collected": value(parsed, "kiln_gc_collected_objects_total", generation="2"),
        "longest": value(parsed, "kiln_gc_pause_max_seconds", generation="2"),
    }


def test_full_collections_are_counted_when_drained(measured):
    gc_pauses.drain()
    before = samples()
    nodes = [Node() for _ in range(1000)]
    del nodes
    gc.collect()
    assert samples() == before  # noted, not yet in the metrics
    gc_pauses.drain()
    after = samples()
    assert after["pauses"] == before["pauses"] + 1
    # At least each Node (the list itself was freed by reference counting).
    assert after["collected"] >= before["collected"] + 1000
    assert after["longest"] > 0


async def test_the_event_loop_drains_pauses(measured):
    gc_pauses.install()  # in this test's loop: starts the drainer
    gc_pauses.drain()
    before = samples()["pauses"]
    gc.collect()
    async with asyncio.timeout(10):
        while samples()["pauses"] == before:
            await asyncio.sleep(0.05)


async def test_metrics_endpoint_answers_with_the_latest_pauses(backend, monkeypatch, measured):
    async with app_client(backend, monkeypatch) as client:
        before = value(
            parse((await client.get("/metrics")).text),
            "kiln_gc_pause_seconds_count",
            generation="2",
        )
        gc.collect()
        after = value(
            parse((await client.get("/metrics")).text),
            "kiln_gc_pause_seconds_count",
            generation="2",
        )
    assert after >= before + 1
