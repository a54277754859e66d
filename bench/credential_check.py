"""The cost of re-checking the credentials of many open sockets (web/socket_credentials.py):
N sockets, half opened with a token and half with an API key, each of an account of its own,
watched by one process's watcher, whose check then runs R times. Prints wall and CPU time
per check and the watcher's memory per socket.

uv run python -m bench.credential_check [--sockets N] [--rounds R] [--backend postgres|sqlite]

PostgreSQL runs against a fresh database (dropped afterwards), SQLite in a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from bench.common import create_database, drop_database, pg_dsn
from models.api_key import ApiKey
from models.config import close_database, open_database
from models.user import Role, User
from services.credentials import Credential
from services.errors import Unauthenticated
from settings import Settings
from web.socket_credentials import SocketCredentials

DATABASE = "kiln_bench_credentials"


class IdleSocket:
    """A socket as the watcher sees it; counts what it is told."""

    told = 0

    async def credential_ended(self, refused: Unauthenticated) -> None:
        IdleSocket.told += 1

    async def role_changed(self, role: Role) -> None:
        IdleSocket.told += 1


async def populate(count: int) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
    """`count` accounts; every other one also has an API key. (user id, key id or None)."""
    users = [
        User(id=uuid.uuid4(), email=f"b{i}-{uuid.uuid4().hex[:8]}@x.io", password_hash="x")
        for i in range(count)
    ]
    for start in range(0, count, 1000):
        await User.bulk_create(users[start : start + 1000])
    keys = [
        ApiKey(
            id=uuid.uuid4(),
            user_id=user.id,
            name="bench",
            prefix="kiln_bench",
            key_hash=uuid.uuid4().hex * 2,
        )
        for user in users[::2]
    ]
    for start in range(0, len(keys), 1000):
        await ApiKey.bulk_create(keys[start : start + 1000])
    key_of = {key.user_id: key.id for key in keys}
    return [(user.id, key_of.get(user.id)) for user in users]


async def run(backend: str, sockets: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        if backend == "postgres":
            await create_database(DATABASE)
            settings = Settings(database_url=pg_dsn(DATABASE), data_dir=Path(data_dir))
        else:
            settings = Settings(database_url="", data_dir=Path(data_dir))
        await open_database(settings, migrate=True)
        try:
            await measure(backend, await populate(sockets), rounds)
        finally:
            await close_database()
            if backend == "postgres":
                await drop_database(DATABASE)


async def measure(
    backend: str, accounts: list[tuple[uuid.UUID, uuid.UUID | None]], rounds: int
) -> None:
    watcher = SocketCredentials(interval=3600.0)  # checks run here, not on its beat
    far = time.time() + 86400
    opened = [IdleSocket() for _ in accounts]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for socket, (user_id, key_id) in zip(opened, accounts, strict=True):
        credential = (
            Credential(user_id, api_key_id=key_id)
            if key_id is not None
            else Credential(user_id, expires_at=far)
        )
        watcher.watch(socket, credential, Role.USER)
    per_socket = (tracemalloc.get_traced_memory()[0] - before) / len(opened)
    tracemalloc.stop()
    await watcher.check()  # warm: connections, statement caches
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        await watcher.check()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert IdleSocket.told == 0, "every credential was good"
    print(
        f"{backend}: {len(opened)} sockets, {rounds} checks: "
        f"wall median {statistics.median(walls) * 1000:.1f} ms "
        f"(max {max(walls) * 1000:.1f}), CPU of this process median "
        f"{statistics.median(cpus) * 1000:.1f} ms per check; "
        f"watcher memory {per_socket:.0f} B per socket (entry, credential, expiry timer)"
    )
    for socket in opened:
        watcher.forget(socket)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    asyncio.run(run(args.backend, args.sockets, args.rounds))


if __name__ == "__main__":
    main()
