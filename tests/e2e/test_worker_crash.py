"""Work survives the death of its worker and a stop of PostgreSQL, on a production stack
(uvicorn and `dramatiq tasks` processes) that runs on private servers of its own
(tests/support/private_servers.py), so that a killed worker's unacknowledged messages and a
stopped database disturb no other test.

- A worker process SIGKILLed mid-generation: another worker takes the generation over once
  the dead one's lease lapses (LEASE_SECONDS, 20 s by default, as here) and completes it;
  with a queued provider, the submitted prediction is polled by the other worker, never
  submitted again.
- PostgreSQL stopped for 15 s under a running generation: the worker's step is tried again
  with backoff instead of dropped, and the generation completes soon after the database is
  back.
- Redis killed and restarted empty while a prediction runs: its next poll, lost with
  Redis's memory, is sent again once the step's lease lapses, and it completes.

Times are upper bounds on recovery (tens of seconds), never speed measurements; the
measured ones are printed (`pytest -s`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e import api
from tests.e2e.client import KilnClient
from tests.e2e.conftest import ServedReplicate
from tests.e2e.fake_provider import FakeProvider
from tests.e2e.stack import (
    DEFAULT_CATALOGUE,
    EXTRA_MODELS,
    WORKER_READY_LINE,
    Process,
    Stack,
    StackError,
    provider_env,
)
from tests.support.private_servers import PrivatePostgres, PrivateRedis
from tests.support.private_stack import start_on_private_servers

pytestmark = pytest.mark.e2e

# A generation of three 1 s steps on the built-in provider (long enough to kill its worker
# mid-way, short enough to finish well within the bound once taken over).
STEADY_MODEL = """

[models.local-takeover]
kind = "IMAGE"
cost_per_output = 1
routes = [{ provider = "local", model = "pattern-v1", timeout = 60, params = { delay = 1 } }]
"""
# "Taken over within 30 s of the death" (issue 17): the generation even completes by then.
TAKEOVER_BOUND = 30.0
# "Finishing within 60 s of recovery" (issue 17).
RECOVERY_BOUND = 60.0
OUTAGE_SECONDS = 15.0
WORKER_BOOT_TIMEOUT = 60.0


@dataclass
class Cluster:
    stack: Stack
    client: KilnClient
    redis: PrivateRedis
    postgres: PrivatePostgres
    replicate: ServedReplicate
    workers: list[Process]

    def spawn_worker(self) -> Process:
        """One more `dramatiq tasks` process (one worker process, as the README runs them),
        once its runtime has started."""
        env = self.stack.process("api").env
        name = f"worker-{uuid.uuid4().hex[:6]}"
        command = [sys.executable, "-m", "dramatiq", "tasks", "--processes", "1"]
        worker = self.stack.spawn(name, [*command, "--threads", "8"], env)
        deadline = time.monotonic() + WORKER_BOOT_TIMEOUT
        while WORKER_READY_LINE not in worker.output(this_run=True):
            if worker.popen.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"{name} did not start\n{worker.output(100)}")
            time.sleep(0.1)
        self.workers.append(worker)
        return worker

    def spawn_workers(self, count: int) -> None:
        for _ in range(count):
            self.spawn_worker()

    def kill(self, worker: Process) -> None:
        """SIGKILL: no goodbye, for the process group (dramatiq's forked worker with it)."""
        os.killpg(worker.popen.pid, signal.SIGKILL)
        worker.popen.wait(timeout=10)
        self.workers.remove(worker)
        self.stack.processes.remove(worker)
        worker.log_file.close()

    def stop_workers(self) -> None:
        for worker in list(self.workers):
            self.kill(worker)


def write_catalogue(directory: Path) -> Path:
    path = directory / "takeover-catalogue.toml"
    path.write_text(DEFAULT_CATALOGUE.read_text() + EXTRA_MODELS + STEADY_MODEL)
    return path


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    private_redis: PrivateRedis,
    private_postgres: PrivatePostgres,
    provider: FakeProvider,
    replicate: ServedReplicate,
) -> AsyncIterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("kiln-takeover")
    env = provider_env(provider.url, replicate.url)
    env["CATALOGUE_PATH"] = str(write_catalogue(data_dir))
    # The production defaults, not the suite's quick sweeps: the workers' own look for
    # lapsed leases (every quarter lease) is what finds a dead worker's step.
    env.update(SWEEP_INTERVAL_SECONDS="15", REQUEUE_AFTER_SECONDS="60", LEASE_SECONDS="20")
    try:
        stack = await start_on_private_servers(
            data_dir, private_redis, private_postgres, "kiln_takeover", env
        )
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    # The stack's own worker command runs two worker processes in one process group: each
    # test runs its own single ones instead, so it knows which one a generation is on.
    default = stack.process("worker")
    default.popen.send_signal(signal.SIGTERM)
    try:
        default.popen.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(default.popen.pid, signal.SIGKILL)
        default.popen.wait(timeout=10)
    stack.processes.remove(default)
    default.log_file.close()
    client = KilnClient(stack.base_url)
    cluster = Cluster(stack, client, private_redis, private_postgres, replicate, [])
    try:
        yield cluster
    finally:
        await client.aclose()
        await asyncio.to_thread(stack.stop)


@pytest.fixture(autouse=True)
def workers_stopped(cluster: Cluster) -> Iterator[None]:
    """The workers a test spawns are stopped after it, passed or failed, so that none is left
    to take the next test's work."""
    yield
    cluster.stop_workers()


async def status_of(cluster: Cluster, account: api.Account, generation_id: str) -> str:
    return str((await api.generation(cluster.client, account, generation_id))["status"])


async def until_status(
    cluster: Cluster, account: api.Account, generation_id: str, wanted: str, within: float
) -> float:
    """Seconds until the generation is `wanted` (AssertionError after `within`, or when it
    ends otherwise); requests refused meanwhile (the database coming back) count as not yet."""
    start = time.monotonic()
    last = "unknown"
    while time.monotonic() - start < within:
        try:
            last = await status_of(cluster, account, generation_id)
        except Exception as error:  # the API answers UNAVAILABLE while PostgreSQL is down
            last = repr(error)
        if last == wanted:
            return time.monotonic() - start
        assert last not in ("FAILED", "CANCELED", "COMPLETED"), last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{generation_id} not {wanted} within {within:.0f} s (last: {last})")


async def running_generation(cluster: Cluster) -> tuple[api.Account, str]:
    """A new account's generation of the steady model, once a worker has started it."""
    account = await api.register(cluster.client)
    created = await api.create(cluster.client, account, model="local-takeover")
    await until_status(cluster, account, created["id"], "PROCESSING", within=20)
    return account, created["id"]


async def submitted_prediction(cluster: Cluster, polls: int) -> tuple[api.Account, str]:
    """A new account's generation on the fake Replicate, once its prediction is submitted
    (it stays pending for `polls` reads)."""
    replicate = cluster.replicate
    replicate.reset()
    replicate.outcome.polls = polls
    account = await api.register(cluster.client)
    created = await api.create(cluster.client, account, model="queued-image")
    deadline = time.monotonic() + 20
    while not replicate.predictions:
        assert time.monotonic() < deadline, "the prediction was never submitted"
        await asyncio.sleep(0.05)
    return account, created["id"]


async def completes_after_outage(
    cluster: Cluster,
    started: tuple[api.Account, str],
    server: PrivateRedis | PrivatePostgres,
    seconds: float,
) -> api.Account:
    """Takes a server down under the started generation for `seconds` (Redis killed: it keeps
    nothing; PostgreSQL stopped), starts it again, and waits for the generation to complete
    within RECOVERY_BOUND of the server's return (the time it took is printed); the
    generation's account."""
    account, generation_id = started
    await asyncio.to_thread(server.kill if isinstance(server, PrivateRedis) else server.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(server.start)
    back_at = time.monotonic()
    await until_status(cluster, account, generation_id, "COMPLETED", within=RECOVERY_BOUND)
    print(f"\ncompleted {time.monotonic() - back_at:.1f} s after {type(server).__name__} was back")
    return account


async def assert_charged_once(cluster: Cluster, account: api.Account) -> None:
    balance = await api.balance(cluster.client, account)
    assert balance == {"available": 4, "reserved": 0, "total": 4}, balance


async def test_a_generation_whose_worker_was_killed_is_completed_by_another(cluster: Cluster):
    worker = await asyncio.to_thread(cluster.spawn_worker)
    account, generation_id = await running_generation(cluster)
    # The only worker has it; a second one is idle when the first dies.
    await asyncio.to_thread(cluster.spawn_worker)
    await asyncio.to_thread(cluster.kill, worker)
    killed_at = time.monotonic()
    assert await status_of(cluster, account, generation_id) == "PROCESSING"
    await until_status(cluster, account, generation_id, "COMPLETED", within=TAKEOVER_BOUND)
    print(f"\nkilled worker's generation completed {time.monotonic() - killed_at:.1f} s later")
    await assert_charged_once(cluster, account)


async def test_a_submitted_prediction_is_polled_by_another_worker_not_resubmitted(
    cluster: Cluster,
):
    worker = await asyncio.to_thread(cluster.spawn_worker)
    account, generation_id = await submitted_prediction(cluster, polls=4)
    await asyncio.to_thread(cluster.spawn_worker)
    await asyncio.to_thread(cluster.kill, worker)  # its next poll dies with it
    killed_at = time.monotonic()
    await until_status(cluster, account, generation_id, "COMPLETED", within=TAKEOVER_BOUND)
    print(f"\nkilled worker's prediction completed {time.monotonic() - killed_at:.1f} s later")
    assert len(cluster.replicate.predictions) == 1
    await assert_charged_once(cluster, account)


async def test_a_generation_running_while_postgres_stops_completes_once_it_is_back(
    cluster: Cluster,
):
    await asyncio.to_thread(cluster.spawn_workers, 2)
    started = await running_generation(cluster)
    account = await completes_after_outage(cluster, started, cluster.postgres, OUTAGE_SECONDS)
    await assert_charged_once(cluster, account)


async def test_a_prediction_whose_poll_was_lost_with_redis_completes_once_redis_is_back(
    cluster: Cluster,
):
    await asyncio.to_thread(cluster.spawn_workers, 2)
    started = await submitted_prediction(cluster, polls=3)
    # Killed, Redis keeps nothing: the prediction's next poll is gone with it.
    account = await completes_after_outage(cluster, started, cluster.redis, 3)
    assert len(cluster.replicate.predictions) == 1
    await assert_charged_once(cluster, account)
