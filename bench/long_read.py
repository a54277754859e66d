"""Long read at saturation (issue 17, item 8): `generations(first: 20)` with outputs from 64
back-to-back clients for many minutes (10 by default), reporting p50/p99/max latency, the
API's garbage-collection pauses (kiln_gc_* from /metrics) and its RSS over the run. A full
collection freeing the garbage of reference cycles once took 1.5 s here; with no cycles left
on the request path, no pause should exceed 50 ms and the RSS should stay flat.

uv run python -m bench.long_read [--minutes 10] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import read
from bench.common import Options
from bench.report import run_long
from bench.sampling import METRICS_TOKEN, RssTrace, gc_stats
from bench.stack import kiln


async def long_read(options: Options) -> list[str]:
    async with kiln("long-read", extra_env={"METRICS_TOKEN": METRICS_TOKEN}) as stack:
        users = await read.seed(stack, options)
        # The workers are idle now; stop them so they take no CPU from the measurement.
        for process in [p for p in stack.stack.processes if p.name == "worker"]:
            process.popen.terminate()
            await asyncio.to_thread(process.popen.wait, 15)
        trace = RssTrace(stack.pids("api")[0])
        before = await gc_stats(stack.base_url)
        trace.start()
        result = await read.kiln_read(stack, users, options)
        await trace.stop()
        gc = (await gc_stats(stack.base_url)).minus(before)
    latencies = sorted(result.latencies)
    return [
        f"{options.clients} clients, {options.duration / 60:.0f} min measured after "
        f"{options.warmup:.0f} s of warm-up, 1 API process",
        f"{result.ok:,} answers ({result.rate:,.0f}/s), {result.errors} errors"
        + (f" (first: {result.first_error})" if result.errors else ""),
        f"latency p50 {result.p(50) * 1000:.1f} ms, p99 {result.p(99) * 1000:.1f} ms, "
        f"p99.9 {result.p(99.9) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
        if latencies
        else "no latencies",
        f"GC: longest pause {gc.longest_ms:.1f} ms; {gc.summary()}",
        trace.summary(),
        f"RSS by minute (MiB): {trace.series()}",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.long_read", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="measured minutes (10)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--results", help="append the figures to this file (bench/RESULTS.md)")
    args = parser.parse_args(argv)
    options = Options(clients=args.clients, duration=args.minutes * 60, warmup=10.0)
    return run_long("long read", "long_read", argv, args.results, long_read(options))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
