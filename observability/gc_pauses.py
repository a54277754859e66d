"""Garbage-collection pauses, measured: kiln_gc_pause_seconds, kiln_gc_pause_max_seconds and
kiln_gc_collected_objects_total (observability/metrics.py).

A collection runs inside whatever allocation triggered it, possibly while that code holds one
of prometheus-client's locks (they are not re-entrant, and in multiprocess mode one lock
guards every metric): the callback itself therefore only appends to a deque, and `drain()`
moves what it noted into the metrics, from the event loop every DRAIN_INTERVAL seconds and
before each /metrics answer."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import deque
from typing import Any

from observability import metrics

DRAIN_INTERVAL = 1.0
# Pauses noted and not drained yet are dropped past this many (the young generation alone
# may be collected thousands of times a second; its pauses are the least interesting).
PENDING_LIMIT = 100_000

# (generation, seconds, objects found unreachable) per collection.
_pending: deque[tuple[int, float, int]] = deque(maxlen=PENDING_LIMIT)
_started = 0.0
_longest: dict[int, float] = {}
_drainer: asyncio.Task[None] | None = None


def _callback(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    else:
        _pending.append((info["generation"], time.perf_counter() - _started, info["collected"]))


def drain() -> None:
    """Moves the pauses noted since the last call into the metrics."""
    while _pending:
        generation, seconds, collected = _pending.popleft()
        label = str(generation)
        metrics.GC_PAUSE.labels(label).observe(seconds)
        if collected:
            metrics.GC_COLLECTED.labels(label).inc(collected)
        if seconds > _longest.get(generation, 0.0):
            _longest[generation] = seconds
            metrics.GC_PAUSE_MAX.labels(label).set(seconds)


def install() -> None:
    """Measures every collection from now on; drains from the running event loop, if any
    (call again in a new loop: it replaces the drainer, never adds a second callback)."""
    global _drainer
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)
    with contextlib.suppress(RuntimeError):  # no running loop: drained at each scrape
        loop = asyncio.get_running_loop()
        if _drainer is None or _drainer.done() or _drainer.get_loop() is not loop:
            _drainer = loop.create_task(_drain_every(DRAIN_INTERVAL))


def uninstall() -> None:
    global _drainer
    if _callback in gc.callbacks:
        gc.callbacks.remove(_callback)
    if _drainer is not None:
        _drainer.cancel()
        _drainer = None
    drain()


async def _drain_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        drain()
