"""Running a long benchmark and appending its figures to bench/RESULTS.md (or any file)."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench.run import machine, raise_open_files


def append_section(path: str, name: str, command: str, lines: list[str], took: float) -> None:
    with Path(path).open("a") as results:
        results.write(
            f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {name}\n\n"
            f"- command: `{command.strip()}`\n- machine: {machine()}\n- took {took:.0f}s\n\n"
            + "".join(f"- {line}\n" for line in lines)
        )


def run_long(
    name: str,
    module: str,
    argv: list[str],
    results: str | None,
    benchmark: Coroutine[Any, Any, list[str]],
) -> int:
    """Runs one long benchmark (`python -m bench.<module>`) under uvloop with as many open
    files as the system allows, prints its lines and, when `results` names a file, appends
    them there as a section with the command that made them and how long it took."""
    raise_open_files()
    started = time.monotonic()
    lines = uvloop.run(benchmark)
    print("\n".join(lines))
    if results:
        command = f"uv run python -m bench.{module} " + " ".join(argv)
        append_section(results, name, command, lines, time.monotonic() - started)
    return 0
