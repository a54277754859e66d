"""What the long benchmarks watch in the API process while they load it: its RSS over time,
its garbage-collection pauses (kiln_gc_* from /metrics) and, with tracemalloc, where its
memory went between two snapshots."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.http import LoadClient

MIB = 2**20
METRICS_TOKEN = "bench-metrics"
MEMORY_PROBE = Path(__file__).resolve().parent / "memory_probe"
SNAPSHOT_TIMEOUT = 120.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    return 0.0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return float("nan")
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if not spread:
        return float("nan")
    return 60 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


@dataclass
class RssTrace:
    """The API's RSS every `interval` seconds from `start()` until `stop()`."""

    pid: int
    interval: float = 10.0
    points: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.points.append((self.points[-1][0] if self.points else 0.0, rss_mib(self.pid)))

    async def _sample(self) -> None:
        began = time.monotonic()
        while True:
            self.points.append((time.monotonic() - began, rss_mib(self.pid)))
            await asyncio.sleep(self.interval)

    def summary(self) -> str:
        if not self.points:
            return "no samples"
        values = [v for _, v in self.points]
        second_half = self.points[len(self.points) // 2 :]
        return (
            f"RSS start {values[0]:.1f} MiB, plateau (median of the second half) "
            f"{statistics.median(v for _, v in second_half):.1f} MiB, end {values[-1]:.1f} MiB, "
            f"max {max(values):.1f} MiB; slope {slope_per_minute(self.points):+.2f} MiB/min over "
            f"the run, {slope_per_minute(second_half):+.2f} MiB/min over its second half"
        )

    def series(self, every: float = 60.0) -> str:
        """One sample per `every` seconds, for the results."""
        shown: list[str] = []
        next_at = 0.0
        for seconds, value in self.points:
            if seconds >= next_at:
                shown.append(f"{seconds / 60:.0f}m {value:.0f}")
                next_at += every
        return ", ".join(shown)


@dataclass
class GcStats:
    """The API's kiln_gc_* metrics, per generation (0, 1, 2)."""

    collections: dict[str, float] = field(default_factory=dict)
    pause_sum: dict[str, float] = field(default_factory=dict)
    pause_max: dict[str, float] = field(default_factory=dict)
    collected: dict[str, float] = field(default_factory=dict)
    over_50ms: dict[str, float] = field(default_factory=dict)

    def minus(self, before: GcStats) -> GcStats:
        """Counts since `before` (the maxima are the process's since it started)."""
        return GcStats(
            {g: v - before.collections.get(g, 0) for g, v in self.collections.items()},
            {g: v - before.pause_sum.get(g, 0) for g, v in self.pause_sum.items()},
            dict(self.pause_max),
            {g: v - before.collected.get(g, 0) for g, v in self.collected.items()},
            {g: v - before.over_50ms.get(g, 0) for g, v in self.over_50ms.items()},
        )

    def summary(self) -> str:
        parts = []
        for g in sorted(self.collections):
            count = self.collections[g]
            mean = self.pause_sum.get(g, 0) / count * 1000 if count else 0.0
            parts.append(
                f"gen{g}: {count:,.0f} collections, mean {mean:.2f} ms, max "
                f"{self.pause_max.get(g, 0) * 1000:.1f} ms, {self.over_50ms.get(g, 0):,.0f} "
                f"over 50 ms, {self.collected.get(g, 0):,.0f} objects found in cycles"
            )
        return "; ".join(parts)

    @property
    def longest_ms(self) -> float:
        return max(self.pause_max.values(), default=0.0) * 1000


async def gc_stats(base_url: str) -> GcStats:
    async with LoadClient(base_url, 1, 30.0) as http:
        status, body = await http.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}: {body[:200]!r}")
    stats = GcStats()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            generation = sample.labels.get("generation")
            if generation is None:
                continue
            if sample.name == "kiln_gc_pause_seconds_count":
                stats.collections[generation] = sample.value
            elif sample.name == "kiln_gc_pause_seconds_sum":
                stats.pause_sum[generation] = sample.value
            elif sample.name == "kiln_gc_pause_max_seconds":
                stats.pause_max[generation] = sample.value
            elif sample.name == "kiln_gc_collected_objects_total":
                stats.collected[generation] = sample.value
            elif sample.name == "kiln_gc_pause_seconds_bucket" and sample.labels["le"] == "0.05":
                stats.over_50ms[generation] = -sample.value  # made "over" below
    for generation, at_most in list(stats.over_50ms.items()):
        stats.over_50ms[generation] = stats.collections.get(generation, 0) + at_most
    return stats


def probe_env(directory: Path) -> dict[str, str]:
    """The environment that makes the API trace its allocations (memory_probe/)."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        "KILN_BENCH_TRACEMALLOC": str(directory),
        "PYTHONPATH": f"{MEMORY_PROBE}{os.pathsep}{path}" if path else str(MEMORY_PROBE),
    }


async def signal_and_wait(pid: int, signum: signal.Signals, path: Path, what: str) -> None:
    """Sends the API's memory probe (memory_probe/) `signum` and waits, up to
    SNAPSHOT_TIMEOUT, for the file it writes in answer at `path`."""
    os.kill(pid, signum)
    deadline = time.monotonic() + SNAPSHOT_TIMEOUT
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} at {path}")
        await asyncio.sleep(0.5)


async def take_snapshot(pid: int, directory: Path, number: int) -> Path:
    """Asks the API for its `number`th tracemalloc snapshots and waits until they are written:
    <number>.raw.snapshot as it is, <number>.collected.snapshot after a full collection."""
    path = directory / f"{number}.collected.snapshot"
    await signal_and_wait(pid, signal.SIGUSR1, path, "tracemalloc snapshot")
    return path


def snapshot_diff(first: Path, last: Path, top: int = 15) -> str:
    """Where memory grew between two snapshots (after full collections): in all, by line,
    then the largest by traceback; and how much more there was before the last collection
    (the garbage of reference cycles)."""
    import tracemalloc

    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    raw = tracemalloc.Snapshot.load(str(last).replace(".collected.", ".raw."))

    def total(snapshot: tracemalloc.Snapshot) -> float:
        return sum(s.size for s in snapshot.statistics("filename")) / MIB

    lines = [
        f"traced: {total(old):.1f} MiB at the first snapshot, {total(new):.1f} MiB at the "
        f"last after a full collection, {total(raw):.1f} MiB just before it",
        "growth by line (after the collection):",
    ]
    for stat in new.compare_to(old, "lineno")[:top]:
        lines.append(f"  {stat}")
    lines.append("largest growth by traceback:")
    for stat in new.compare_to(old, "traceback")[:3]:
        lines.append(f"  {stat.size_diff / 1024:+.0f} KiB, {stat.count_diff:+d} blocks:")
        lines.extend(f"    {frame}" for frame in stat.traceback.format()[-16:])
    return "\n".join(lines)


async def name_cycles(pid: int, directory: Path) -> str:
    """Asks the API to keep its cyclic garbage for 10 s and name it (memory_probe/garbage.py);
    the kinds of cycle found, most frequent first, and where the whole report is kept."""
    path = directory / "cycles.txt"
    await signal_and_wait(pid, signal.SIGUSR2, path, "report of cycles")
    kept = Path(tempfile.mkstemp(prefix="kiln-soak-cycles-", suffix=".txt")[1])
    shutil.copy(path, kept)
    text = path.read_text()
    head = [line for line in text.splitlines() if not line.startswith("    ")]
    return (
        f"reference cycles in 10 s of load (whole report: {kept}):\n\n```\n"
        + "\n".join(head[:80])
        + "\n```"
    )
