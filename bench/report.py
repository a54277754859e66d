"""Appending a long benchmark's figures to bench/RESULTS.md (or any file)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.run import machine


def append_section(path: str, name: str, command: str, lines: list[str], took: float) -> None:
    with Path(path).open("a") as results:
        results.write(
            f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {name}\n\n"
            f"- command: `{command.strip()}`\n- machine: {machine()}\n- took {took:.0f}s\n\n"
            + "".join(f"- {line}\n" for line in lines)
        )
