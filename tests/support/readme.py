"""Commands as the README gives them, so tests run what a person would type."""

from __future__ import annotations

import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
API_COMMAND = "uv run uvicorn --factory server:create_app"


def production_uvicorn_args() -> list[str]:
    """The arguments after `uv run uvicorn` of the API command in "Running in production"
    (continuation lines joined, the trailing comment dropped)."""
    section = README.read_text().split("## Running in production", 1)[1]
    lines = iter(section.splitlines())
    for line in lines:
        if line.startswith(API_COMMAND):
            command = line
            while command.rstrip().endswith("\\"):
                command = command.rstrip()[:-1] + " " + next(lines).strip()
            words = shlex.split(command, comments=True)
            return words[3:]
    raise AssertionError(f"README's production section has no `{API_COMMAND} ...` line")
