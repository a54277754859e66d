"""Run the benchmarks and print a table; the table is also appended to bench/RESULTS.md.

uv run python -m bench.run [--only accept,read,pipeline,fanout] [--quick] [...]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench import accept, fanout, inflight, pipeline, read
from bench.common import Options, Row

BENCHMARKS: dict[str, Callable[[Options], Awaitable[list[Row]]]] = {
    "accept": accept.run,
    "read": read.run,
    "pipeline": pipeline.run,
    "fanout": fanout.run,
    "inflight": inflight.run,
}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def parse(argv: list[str]) -> tuple[list[str], Options, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--quick", action="store_true", help="short runs, small counts")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where the table is appended (bench/RESULTS.md; experiments: a scratch file)",
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, help="seconds measured per load (20; quick 8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (pipeline)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="uvicorn processes (accept, read)"
    )
    parser.add_argument(
        "--accept-rate", type=float, default=100.0, help="accept: offered rate for latency (/s)"
    )
    parser.add_argument("--generations", type=int, help="pipeline generations (2000; quick 500)")
    parser.add_argument("--subscribers", type=int, help="fan-out subscribers (1000; quick 200)")
    parser.add_argument("--inflight", type=int, help="in-flight generations (5000; quick 300)")
    parser.add_argument(
        "--inflight-rate", type=float, help="in-flight submissions per second (default: at once)"
    )
    parser.add_argument(
        "--provider-seconds", type=float, help="in-flight provider time T (10; quick 5)"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    options = Options(
        quick=args.quick,
        clients=args.clients,
        workers=args.workers,
        threads=args.threads,
        api_processes=args.api_processes,
        accept_rate=args.accept_rate,
        duration=args.duration or (8.0 if args.quick else 20.0),
        warmup=2.0 if args.quick else 3.0,
        generations=args.generations or (500 if args.quick else 2000),
        subscribers=args.subscribers or (200 if args.quick else 1000),
        inflight=args.inflight or (300 if args.quick else 5000),
        inflight_rate=args.inflight_rate,
        provider_seconds=args.provider_seconds or (5.0 if args.quick else 10.0),
    )
    return names, options, args.results


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | metric | Kiln | raw limit | Kiln / raw | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(
            f"| {r.benchmark} | {r.metric} ({r.unit}) | {fmt(r.kiln)} | {fmt(r.raw)} | {ratio} "
            f"| {r.note} |"
        )
    return "\n".join(lines)


def machine() -> str:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{pages / 2**30:.1f} GiB RAM, {platform.platform()}, Python {platform.python_version()}"
    )


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(argv: list[str]) -> int:
    names, options, results_path = parse(argv)
    raise_open_files()
    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    for name in names:
        print(f"== {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            rows.extend(await BENCHMARKS[name](options))
        except Exception as error:
            traceback.print_exc()
            failures.append(f"{name}: {type(error).__name__}: {str(error)[:500]}")
        print(f"== {name} done in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    out = table(rows)
    print(out)
    for failure in failures:
        print(f"FAILED {failure}")
    command = "uv run python -m bench.run " + " ".join(argv)
    with results_path.open("a") as results:
        results.write(
            f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
            f"- command: `{command.strip()}`\n- machine: {machine()}\n"
            f"- took {time.monotonic() - started:.0f}s\n\n{out}\n"
        )
        for failure in failures:
            results.write(f"\nFAILED {failure}\n")
    return 1 if failures else 0


if __name__ == "__main__":
    # uvloop, as the API runs under uvicorn: the load generator's own CPU per request is
    # taken from the cores it measures (raw and Kiln sides alike).
    sys.exit(uvloop.run(main(sys.argv[1:])))
