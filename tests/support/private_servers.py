"""Private Redis and PostgreSQL servers that a test may kill and bring back: the fault
injection of the outage tests. Nobody else uses them, so stopping one disturbs no other test
(or session) sharing the machine's own services.

- `PrivateRedis`: `redis-server` on a free port that keeps nothing (`--save ""`,
  `--appendonly no`): `kill()` loses every key, as a crashed Redis without persistence does;
  `start()` brings it back empty on the same port; `pause()`/`resume()` stop and continue the
  process (SIGSTOP/SIGCONT), a Redis that accepts connections but answers nothing.
- `PrivatePostgres`: a cluster made by `initdb` in a temporary directory, run with `pg_ctl`
  on a free port; `stop()` shuts it down (immediate mode: a crash) and `start()` brings it back
  on the same port with its data. The tests run as root, which PostgreSQL refuses, so every
  PostgreSQL command runs as the `postgres` OS user (`runuser -u postgres --`) in a directory
  that user owns.

Both are context managers that clean up after themselves. A server that cannot start skips
the test, except under CI=true, where it fails it (never a silent skip in CI)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

START_TIMEOUT = 30.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """A private server could not be had: fail under CI, skip elsewhere."""
    if _in_ci():
        pytest.fail(f"{message} (CI=true: a missing service fails the run)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class _PrivateServer:
    """What both servers share: a free port, a temporary directory removed on close, and the
    context-manager protocol (a server that fails to start is cleaned up all the same)."""

    def __init__(self, directory_prefix: str) -> None:
        self.port = free_port()
        self._directory = Path(tempfile.mkdtemp(prefix=directory_prefix))

    def start(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        """Stop the server process, however abruptly (the directory is removed after)."""
        raise NotImplementedError

    def close(self) -> None:
        self._halt()
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class PrivateRedis(_PrivateServer):
    def __init__(self) -> None:
        super().__init__("kiln-private-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self._directory / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start (again) on this server's port, empty; returns once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
            return
        if self.running:
            return
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
                "--logfile",
                str(self._log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pings():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self._log.read_text(errors="replace") if self._log.exists() else ""
                self.kill()
                unavailable(f"private redis-server did not start on {self.port}:\n{log}")
                return
            time.sleep(0.05)

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash. Everything it held is gone."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGCONT)  # a paused one must be able to die
            self._process.kill()
        self._process.wait(timeout=START_TIMEOUT)
        self._process = None

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted (by the kernel) but nothing is answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _halt(self) -> None:
        self.kill()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(found[0]).parent if found else None


class PrivatePostgres(_PrivateServer):
    """Superuser `postgres`, trust authentication, on 127.0.0.1 only."""

    user = "postgres"

    def __init__(self) -> None:
        super().__init__("kiln-private-pg-")
        self._bin = _postgres_bin()
        self._data = self._directory / "data"
        self._log = self._directory / "server.log"
        self._as_postgres: list[str] = []
        self._made = False

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_postgres, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def _make(self) -> None:
        if self._bin is None:
            unavailable("PostgreSQL's server binaries are not installed (/usr/lib/postgresql)")
            return
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: everything runs as the `postgres` user, in a
            # directory it owns (the temporary directory is root's 0700 until handed over).
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("there is no `postgres` OS user to run a private PostgreSQL as")
                return
            os.chown(self._directory, account.pw_uid, account.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        made = self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self._data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            timeout=120,
        )
        if made.returncode != 0:
            unavailable(f"initdb failed:\n{made.stdout}\n{made.stderr}")
            return
        self._made = True

    def start(self) -> None:
        """Start (again) on this cluster's port, with its data; returns once it accepts
        connections."""
        if not self._made:
            self._make()
        assert self._bin is not None  # _make() found it, or did not return
        # fsync and full-page writes are off for speed: stop() kills the server, not the
        # machine, so the OS keeps what was written. Commits stay synchronous: an
        # asynchronous commit is lost when the server is killed, and the tests that stop
        # it mid-work would then see rows vanish that a real outage keeps.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._directory} "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        started = self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self._data),
            "-l",
            str(self._log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
            timeout=START_TIMEOUT + 10,
        )
        if started.returncode != 0 or not _answers(self.port):
            log = self._log.read_text(errors="replace") if self._log.exists() else ""
            unavailable(
                f"private PostgreSQL did not start on {self.port}:\n"
                f"{started.stdout}\n{started.stderr}\n{log[-3000:]}"
            )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (immediate: no clean shutdown, like a crash); the data stays."""
        if not self._made or self._bin is None:
            return
        self._run(str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", mode, "-w", "stop")

    def _halt(self) -> None:
        self.stop()
