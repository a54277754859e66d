"""Starting and stopping the real Kiln processes the end-to-end tests drive.

Two stacks, the same suite:
- embedded: `python server.py` alone (SQLite, stub broker, worker threads in the server).
- production: `tortoise migrate`, then uvicorn and `dramatiq tasks` worker processes
  sharing PostgreSQL, Redis and a media directory.

Everything here is blocking (subprocesses, polling); the async fixture runs it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tests.support import fast_path
from tests.support.readme import production_uvicorn_args

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CATALOGUE = ROOT / "services" / "default_catalogue.toml"

READY_TIMEOUT = 30.0
MIGRATE_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
WORKER_PROCESSES = 2
WORKER_READY_LINE = "Kiln worker runtime started"

# Settings the app reads from the environment; none may leak in from the caller's shell.
KILN_ENV = (
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_NAMESPACE",
    "HOST",
    "PORT",
    "PUBLIC_BASE_URL",
    "ENVIRONMENT",
    "JWT_SECRET",
    "JWT_TTL_SECONDS",
    "SIGNUP_GRANT",
    "EMBEDDED_WORKER_THREADS",
    "LOCAL_PROVIDER_DELAY",
    "REQUEUE_AFTER_SECONDS",
    "SWEEP_INTERVAL_SECONDS",
    "LEASE_SECONDS",
    "WS_INIT_TIMEOUT_SECONDS",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "CATALOGUE_PATH",
    "FAST_PATH_ENABLED",
    "PAYMENT_WEBHOOK_SECRET",
    "PAYMENT_WEBHOOK_TOLERANCE_SECONDS",
    "CREDIT_PACKS",
    "OPENAI_API_KEY",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "OPENAI_BASE_URL",
    "PROVIDER_LIMITS",
    "PROVIDER_RETRY_ATTEMPTS",
    "BREAKER_FAILURE_THRESHOLD",
    "BREAKER_MIN_CALLS",
    "BREAKER_COOLDOWN_SECONDS",
    "FETCH_ALLOW_HOSTS",
    "API_KEY_PEPPER",
    "LOGIN_MAX_FAILURES",
    "LOGIN_FAILURE_WINDOW_SECONDS",
    "RATE_LIMIT_WINDOW_SECONDS",
    "RATE_LIMIT_PER_USER",
    "RATE_LIMIT_PER_PRIORITY_USER",
    "RATE_LIMIT_PER_IP",
    "QUERY_RATE_LIMIT_PER_USER",
    "QUERY_RATE_LIMIT_PER_PRIORITY_USER",
    "QUERY_RATE_LIMIT_PER_IP",
    "MAX_RESULT_OBJECTS",
    "MAX_QUERY_DEPTH",
    "MAX_QUERY_ALIASES",
    "MAX_QUERY_TOKENS",
    "MAX_BODY_BYTES",
    "GRAPHQL_CACHE_SIZE",
    "PERSISTED_QUERY_MAX_ENTRIES",
    "PERSISTED_QUERY_MAX_BYTES",
    "PERSISTED_QUERY_CACHE_SECONDS",
    "INTROSPECTION_ENABLED",
    "GRAPHIQL_ENABLED",
    "CORS_ALLOW_ORIGINS",
    "METRICS_TOKEN",
    "METRICS_PUBLIC",
    "TRUSTED_PROXIES",
    "MAX_HEADER_BYTES",
    "MAX_HEADERS",
    "HEADER_TIMEOUT_SECONDS",
    "WEBHOOK_REJECTIONS_PER_IP",
)
REPLICATE_TOKEN = "r8_e2e_fake"
# Operations per minute per user and per address on both stacks, and the one browser origin.
E2E_RATE_LIMIT = 100_000
E2E_CORS_ORIGIN = "https://app.example.com"
# This run's own Redis namespace: runs side by side never take each other's jobs.
REDIS_NAMESPACE = f"kiln-e2e-{os.getpid()}"
# Both stacks accept payment webhooks signed with this.
PAYMENT_WEBHOOK_SECRET = "whsec_e2e_secret"
# Production brings its own secrets (a database URL makes the settings production-like, and
# the API and workers refuse to start without them) and scrapes /metrics with its token.
E2E_JWT_SECRET = "e2e-jwt-secret-" + "j" * 32
E2E_API_KEY_PEPPER = "e2e-api-key-pepper-" + "p" * 32
E2E_METRICS_TOKEN = "e2e-metrics-token-" + "m" * 32

# Appended to a copy of the default catalogue: a model whose provider always fails, and a
# model with a short time limit (the sweeper's timeout path).
EXTRA_MODELS = """

# --- added by the end-to-end tests ---
[models.local-broken]
kind = "IMAGE"
cost_per_output = 1
time_limit = 300

[[models.local-broken.routes]]
provider = "local"
model = "pattern-v1"
timeout = 30
params = { fail = "PROVIDER_ERROR" }

[models.remote-image]
kind = "IMAGE"
cost_per_output = 1
routes = [{ provider = "openai", model = "good-model", timeout = 30 }]

[models.failover-image]
kind = "IMAGE"
cost_per_output = 1
routes = [
  { provider = "openai", model = "broken-model", timeout = 30 },
  { provider = "local", model = "pattern-v1", timeout = 30 },
]

[models.flaky-image]
kind = "IMAGE"
cost_per_output = 1
routes = [
  { provider = "openai", model = "flaky-model", timeout = 30 },
  { provider = "local", model = "pattern-v1", timeout = 30 },
]

[models.queued-image]
kind = "IMAGE"
cost_per_output = 1
routes = [{ provider = "replicate", model = "black-forest-labs/flux-schnell", timeout = 30 }]

[models.queued-slow-image]
kind = "IMAGE"
cost_per_output = 1

# Its jobs are expected to take ten minutes: the first poll is that far away.
[[models.queued-slow-image.routes]]
provider = "replicate"
model = "black-forest-labs/flux-dev"
timeout = 30
expected_seconds = 600

[models.side-fails-image]
kind = "IMAGE"
cost_per_output = 1
routes = [{ provider = "openai", model = "side-fails-model", timeout = 30 }]

[models.local-steady]
kind = "IMAGE"
cost_per_output = 1
routes = [{ provider = "local", model = "pattern-v1", timeout = 30, params = { delay = 0.5 } }]

[models.local-slow]
kind = "IMAGE"
cost_per_output = 1
time_limit = 2
routes = [{ provider = "local", model = "pattern-v1", timeout = 30, params = { delay = 2 } }]
"""


class StackError(RuntimeError):
    """A stack did not start; the message carries the processes' output."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_catalogue(directory: Path) -> Path:
    path = directory / "catalogue.toml"
    path.write_text(DEFAULT_CATALOGUE.read_text() + EXTRA_MODELS)
    return path


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KILN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    # Where this run's output starts in the log (a restarted process appends to it).
    log_offset: int = 0

    def output(self, tail_lines: int | None = None, *, this_run: bool = False) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        try:
            data = self.log_path.read_bytes()
        except OSError as error:
            return f"<cannot read {self.log_path}: {error}>"
        text = data[self.log_offset if this_run else 0 :].decode(errors="replace")
        if tail_lines is not None:
            text = "\n".join(text.splitlines()[-tail_lines:])
        return text


@dataclass
class Stack:
    kind: str
    port: int
    data_dir: Path
    catalogue_path: Path
    redis_url: str | None = None
    processes: list[Process] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log_path = self.data_dir / f"{name}.log"
        log_file = log_path.open("ab")
        log_offset = log_file.tell()
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group, so the workers dramatiq forks can be stopped with it.
            start_new_session=True,
        )
        process = Process(name, args, env, popen, log_path, log_file, log_offset)
        self.processes.append(process)
        return process

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def restart(
        self,
        process: Process,
        env: dict[str, str] | None = None,
        timeout: float = STOP_TIMEOUT,
    ) -> Process:
        """Start `process` again (same command; its environment unless `env` is given) once it
        has exited (killed after `timeout` seconds if it has not), and wait until the stack is
        ready again."""
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.log_file.close()
        self.processes.remove(process)
        again = self.spawn(process.name, process.args, env if env is not None else process.env)
        self.wait_ready()
        return again

    def logs(self, tail_lines: int | None = None) -> str:
        parts = []
        for process in self.processes:
            state = process.popen.poll()
            status = "running" if state is None else f"exited with {state}"
            parts.append(
                f"===== {self.kind}/{process.name} ({status}) {process.log_path} =====\n"
                + process.output(tail_lines)
            )
        return "\n".join(parts)

    def check_alive(self) -> None:
        for process in self.processes:
            code = process.popen.poll()
            if code is not None:
                raise StackError(
                    f"{self.kind}: {process.name} exited with {code}\n{self.logs(200)}"
                )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """GET /readyz until 200 (and, in production, until every worker process booted)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as http:
            while True:
                self.check_alive()
                try:
                    response = http.get(f"{self.base_url}/readyz")
                    last = f"{response.status_code} {response.text}"
                    if response.status_code == 200 and self._workers_booted():
                        return
                except httpx.HTTPError as error:
                    last = f"{type(error).__name__}: {error}"
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{self.kind}: not ready after {timeout:.0f}s (last /readyz: {last})\n"
                        + self.logs(200)
                    )
                time.sleep(0.1)

    def _workers_booted(self) -> bool:
        workers = [p for p in self.processes if p.name == "worker"]
        return all(
            p.output(this_run=True).count(WORKER_READY_LINE) >= WORKER_PROCESSES for p in workers
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM every process, SIGKILL its group after `timeout` seconds."""
        for process in self.processes:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=timeout)
            # Anything the leader left behind in its group (dramatiq's forked workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.popen.pid, signal.SIGKILL)
            process.log_file.close()


def create_admin(stack: Stack, email: str, password: str) -> None:
    """The documented operator command, against the stack's own database."""
    env = {**stack.processes[0].env, "KILN_ADMIN_PASSWORD": password}
    result = subprocess.run(
        [sys.executable, "manage.py", "create-admin", email],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=MIGRATE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"manage.py create-admin failed:\n{result.stdout!r}\n{result.stderr!r}")


def provider_env(openai_url: str, replicate_url: str) -> dict[str, str]:
    """Both stacks reach the fake OpenAI-compatible provider (at most 5 calls at a time) and a
    fake Replicate, with quick breakers so the tests can watch them open and recover."""
    return {
        "OPENAI_API_KEY": "sk-e2e-fake",
        "OPENAI_BASE_URL": openai_url,
        "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
        "REPLICATE_BASE_URL": replicate_url,
        "PROVIDER_LIMITS": '{"openai": {"max_concurrent": 5}}',
        "PROVIDER_RETRY_ATTEMPTS": "2",
        "BREAKER_FAILURE_THRESHOLD": "3",
        "BREAKER_MIN_CALLS": "3",
        "BREAKER_COOLDOWN_SECONDS": "2",
        "FETCH_ALLOW_HOSTS": "127.0.0.1",
        # The whole suite registers and works from one address: limits the tests do not
        # trip by accident (test_security checks the headers that count them).
        "RATE_LIMIT_PER_USER": str(E2E_RATE_LIMIT),
        "RATE_LIMIT_PER_PRIORITY_USER": str(E2E_RATE_LIMIT * 2),
        "RATE_LIMIT_PER_IP": str(E2E_RATE_LIMIT),
        "QUERY_RATE_LIMIT_PER_USER": str(E2E_RATE_LIMIT),
        "QUERY_RATE_LIMIT_PER_PRIORITY_USER": str(E2E_RATE_LIMIT * 2),
        "QUERY_RATE_LIMIT_PER_IP": str(E2E_RATE_LIMIT),
        "CORS_ALLOW_ORIGINS": E2E_CORS_ORIGIN,
    }


def start_embedded(data_dir: Path, extra_env: dict[str, str] | None = None) -> Stack:
    stack = Stack("embedded", free_port(), data_dir, write_catalogue(data_dir))
    env = base_env(
        DATA_DIR=str(data_dir),
        PORT=str(stack.port),
        LOCAL_PROVIDER_DELAY="0.05",
        CATALOGUE_PATH=str(stack.catalogue_path),
        WS_INIT_TIMEOUT_SECONDS="1",
        PAYMENT_WEBHOOK_SECRET=PAYMENT_WEBHOOK_SECRET,
        SWEEP_INTERVAL_SECONDS="1",
        EMBEDDED_WORKER_THREADS="8",
        # The embedded stack runs plain Strawberry, the production one the fast path
        # (tests/support/fast_path.py): the end-to-end suite covers both ways once.
        FAST_PATH_ENABLED=fast_path.stack_setting(False),
        **(extra_env or {}),
    )
    if (ROOT / ".env").exists():
        # Settings also read ./.env: make sure a developer's file cannot switch modes.
        env.update(DATABASE_URL="", REDIS_URL="")
    stack.spawn("server", [sys.executable, "server.py"], env)
    try:
        stack.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return stack


def production_api_command(port: int) -> list[str]:
    """The README's production API command, flag for flag, but on this stack's port, on
    127.0.0.1 only, and one process (the suite reads one process's /metrics)."""
    args: list[str] = []
    words = iter(production_uvicorn_args())
    for word in words:
        if word in ("--host", "--port", "--workers"):
            next(words)  # its value
        else:
            args.append(word)
    return [sys.executable, "-m", "uvicorn", *args, "--host", "127.0.0.1", "--port", str(port)]


def start_production(
    data_dir: Path, database_url: str, redis_url: str, extra_env: dict[str, str] | None = None
) -> Stack:
    stack = Stack(
        "production", free_port(), data_dir, write_catalogue(data_dir), redis_url=redis_url
    )
    env = base_env(
        **{
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": REDIS_NAMESPACE,
            "JWT_SECRET": E2E_JWT_SECRET,
            "API_KEY_PEPPER": E2E_API_KEY_PEPPER,
            "METRICS_TOKEN": E2E_METRICS_TOKEN,
            # Off by default in production; the browser tests open it on both stacks.
            "GRAPHIQL_ENABLED": "true",
            "DATA_DIR": str(data_dir),
            "LOCAL_PROVIDER_DELAY": "0.05",
            "CATALOGUE_PATH": str(stack.catalogue_path),
            "WS_INIT_TIMEOUT_SECONDS": "1",
            "SWEEP_INTERVAL_SECONDS": "1",
            "REQUEUE_AFTER_SECONDS": "2",
            "PAYMENT_WEBHOOK_SECRET": PAYMENT_WEBHOOK_SECRET,
            "FAST_PATH_ENABLED": fast_path.stack_setting(True),
            **(extra_env or {}),  # a test's own stack may change any of these
        }
    )
    try:
        migrate = stack.spawn("migrate", [sys.executable, "-m", "tortoise", "migrate"], env)
        try:
            code = migrate.popen.wait(timeout=MIGRATE_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            raise StackError(f"`tortoise migrate` failed ({code})\n{stack.logs()}")
        stack.processes.remove(migrate)
        migrate.log_file.close()

        stack.spawn("api", production_api_command(stack.port), env)
        stack.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "dramatiq",
                "tasks",
                "--processes",
                str(WORKER_PROCESSES),
                "--threads",
                "8",
            ],
            env,
        )
        stack.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return stack
