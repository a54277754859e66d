"""Running Kiln's migrations in a process of their own, as a deployment does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def migrate(database_url: str, *target: str) -> None:
    """`python -m tortoise migrate [app version]` against `database_url`."""
    result = subprocess.run(
        [sys.executable, "-m", "tortoise", "migrate", *target],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database_url, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
