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
import threading
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


CYCLE_SECONDS = 10.0


def _cycles(signum: int, frame: object) -> None:
    """For CYCLE_SECONDS, everything a collection finds unreachable is kept, then named in
    $KILN_BENCH_TRACEMALLOC/cycles.txt (garbage.py), and freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    threading.Timer(CYCLE_SECONDS, _report_cycles).start()


def _report_cycles() -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    import garbage

    gc.collect()
    found = list(gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    path = os.path.join(_directory, "cycles.txt")
    garbage.report(found, path + ".part", 0)
    found.clear()
    os.replace(path + ".part", path)


if _directory and "server:create_app" in sys.argv:
    signal.signal(signal.SIGUSR1, _snapshot)
    signal.signal(signal.SIGUSR2, _cycles)
