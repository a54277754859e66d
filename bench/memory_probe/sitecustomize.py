"""Loaded at start-up by the API process of a soak run with --tracemalloc (bench/soak.py puts
this directory on PYTHONPATH): each time the process receives SIGUSR1 it writes a tracemalloc
snapshot to $KILN_BENCH_TRACEMALLOC/<n>.snapshot, the first time after starting to trace (so
start-up runs at full speed, and the last snapshot holds what was allocated since the first
signal and is still alive). Nothing of Kiln knows about it; other processes of the run
(migrations, workers) are left alone."""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc

FRAMES = 8
_directory = os.environ.get("KILN_BENCH_TRACEMALLOC", "")
_taken = 0


def _snapshot(signum: int, frame: object) -> None:
    global _taken
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    _taken += 1
    # As it is, then after a full collection: what the second lacks was garbage of reference
    # cycles, waiting for a collection (full ones are rare: server.py).
    collected = os.path.join(_directory, f"{_taken}.collected.snapshot")
    tracemalloc.take_snapshot().dump(collected.replace(".collected", ".raw"))
    gc.collect()
    tracemalloc.take_snapshot().dump(collected + ".part")
    os.replace(collected + ".part", collected)  # complete when it appears under its name


if _directory and "server:create_app" in sys.argv:
    signal.signal(signal.SIGUSR1, _snapshot)
