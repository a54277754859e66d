"""A `dramatiq tasks` worker refuses to start with public, missing or weak secrets, like the
API: production-like settings (a database or Redis URL) must bring their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from settings import Settings
from tasks.worker_boot import WorkerBoot
from tests.support.services import need, pg_url, redis_url

ROOT = Path(__file__).resolve().parents[2]
STRONG = "w" * 48


def test_the_worker_boot_refuses_production_settings_without_secrets(tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=pg_url("kiln"), redis_url=redis_url(14))
    with pytest.raises(SystemExit, match=r"JWT_SECRET.*API_KEY_PEPPER"):
        WorkerBoot(settings).after_process_boot(None)
    strong = settings.model_copy(update={"jwt_secret": STRONG, "api_key_pepper": STRONG})
    WorkerBoot(strong).after_process_boot(None)


def test_dramatiq_tasks_exits_without_its_secrets(tmp_path):
    """The real command, with the deployment of the issue: DATABASE_URL and REDIS_URL, no
    ENVIRONMENT=production and no secrets."""
    need("postgres")
    need("redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "API_KEY_"))}
    env.update(
        DATABASE_URL=pg_url("postgres"),
        REDIS_URL=redis_url(14),
        REDIS_NAMESPACE=f"kiln-test-{uuid.uuid4().hex}",
        DATA_DIR=str(tmp_path),
        ENVIRONMENT="development",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1", "--threads", "1"]
    # Its own process group: dramatiq's worker process is stopped with it if it never exits.
    worker = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = worker.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        output, _ = worker.communicate()
        pytest.fail(f"the worker started without secrets:\n{output}")
    assert worker.returncode != 0
    assert "JWT_SECRET" in output
