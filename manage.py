"""Operator commands.

uv run manage.py migrate                      apply database migrations (the PostgreSQL
                                              database must exist: createdb it first)
uv run manage.py create-admin EMAIL           create an admin (or promote an account);
                                              the password comes from KILN_ADMIN_PASSWORD
                                              or is asked for on a terminal
uv run manage.py sweep                        run the sweeper once (production: jobs it sends
                                              again go to the workers' Redis queues)
uv run manage.py schema                       print the GraphQL schema (SDL), for code
                                              generators

A problem the operator can fix (a missing database, an unreachable server, a short password)
is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import redis
from tortoise.exceptions import DBConnectionError, OperationalError

from models.config import close_database, open_database
from observability import logs
from runtime import Runtime, start_runtime, stop_runtime
from schema.build import build_schema
from services import auth
from services.errors import DomainError
from services.sweeper import sweep as sweep_once
from settings import Settings, get_settings

PASSWORD_VARIABLE = "KILN_ADMIN_PASSWORD"


class OperatorError(Exception):
    """Something the operator can fix; its message is the whole of what is printed."""


def _location(url: str) -> str:
    """Where a database or Redis URL points, without its credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "redis", "rediss"):
        return url  # a SQLite file
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}{parts.path}"


def _explain(error: BaseException, settings: Settings) -> str | None:
    """A failure to reach the database or Redis as one line; None for anything else (a bug
    keeps its traceback)."""
    url = settings.effective_database_url
    translated = isinstance(error, DBConnectionError | OperationalError) and error.__cause__
    cause = error.__cause__ if translated else error
    if isinstance(cause, asyncpg.InvalidCatalogNameError):
        parts = urlsplit(url)
        name, host = parts.path.lstrip("/"), parts.hostname or "localhost"
        port = f" -p {parts.port}" if parts.port else ""
        owner = parts.username or "<owner>"
        return (
            f'database "{name}" does not exist on {_location(url).rsplit("/", 1)[0]}: create it '
            f"first (e.g. `createdb -h {host}{port} -U postgres -O {owner} {name}`), then migrate"
        )
    if isinstance(cause, asyncpg.UndefinedTableError) or "no such table" in str(cause):
        return f"the database at {_location(url)} is not migrated: run `manage.py migrate` first"
    if isinstance(cause, asyncpg.PostgresError | DBConnectionError):
        return f"cannot use the database at {_location(url)}: {cause}"
    if isinstance(error, redis.ConnectionError):
        return f"cannot connect to Redis at {_location(settings.redis_url)}: {error}"
    if isinstance(error, OSError):
        return f"cannot reach the database at {_location(url)}: {error.strerror or error}"
    return None


@contextlib.asynccontextmanager
async def _explained(settings: Settings) -> AsyncIterator[None]:
    """Turns a failure to reach the database or Redis into an OperatorError."""
    try:
        yield
    except Exception as error:
        problem = _explain(error, settings)
        if problem is None:
            raise
        with contextlib.suppress(Exception):
            await close_database()  # whatever opened before the failure
        raise OperatorError(problem) from error


@contextlib.asynccontextmanager
async def _runtime(settings: Settings, *, migrate: bool) -> AsyncIterator[Runtime]:
    async with _explained(settings):
        started = await start_runtime(settings, migrate=migrate)
        try:
            yield started
        finally:
            await stop_runtime()


async def migrate(args: argparse.Namespace, settings: Settings) -> None:
    """Only the database: migrating needs neither Redis nor the output store."""
    async with _explained(settings):
        await open_database(settings, migrate=True)
    await close_database()
    print("migrations applied")


def _password() -> str:
    password = os.environ.get(PASSWORD_VARIABLE)
    if password:
        return password
    if not sys.stdin.isatty():
        raise OperatorError(f"no password: set {PASSWORD_VARIABLE}, or run it on a terminal")
    try:
        password = getpass.getpass("Password: ")
        again = getpass.getpass("Password (again): ")
    except EOFError:
        raise OperatorError("no password given") from None
    if password != again:
        raise OperatorError("the passwords differ")
    return password


async def create_admin(args: argparse.Namespace, settings: Settings) -> None:
    password = _password()
    async with _runtime(settings, migrate=settings.migrate_on_start):
        try:
            user = await auth.create_admin(args.email, password, settings)
        except DomainError as error:
            raise OperatorError(error.message) from None
        print(f"admin {user.email} ({user.id})")


async def sweep(args: argparse.Namespace, settings: Settings) -> None:
    """One sweep, as the workers' sweeper runs every SWEEP_INTERVAL_SECONDS."""
    if settings.embedded:
        raise OperatorError(
            "the embedded server sweeps by itself (no REDIS_URL: jobs sent from here would "
            "reach no worker); this command is for production"
        )
    import tasks  # noqa: F401  (configures the Redis broker: jobs sent again reach the workers)

    async with _runtime(settings, migrate=False) as started:
        if started.redis is not None:
            await started.redis.ping()  # the jobs it sends again must reach the queues
        done = await sweep_once(started.catalogue, settings.requeue_after_seconds)
    print(
        f"requeued {done['requeued']}, timed out {done['timed_out']}, "
        f"settled {done['settled']} holds, pruned {done['pruned']} keys"
    )


async def schema(args: argparse.Namespace, settings: Settings) -> None:
    sys.stdout.write(build_schema(settings).as_str() + "\n")


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, None]]] = {
    "migrate": migrate,
    "create-admin": create_admin,
    "sweep": sweep,
    "schema": schema,
}


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog="manage.py", description="Kiln operator commands")
    commands = made.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    admin = commands.add_parser("create-admin", help="create or promote an admin")
    admin.add_argument("email")
    commands.add_parser("sweep", help="run the sweeper once")
    commands.add_parser("schema", help="print the GraphQL schema (SDL)")
    return made


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    # A command prints what it did; what the services log meanwhile (a message that could not
    # be published) is shown from WARNING up, in the shape of every other Kiln log line.
    logs.setup_logging(level="WARNING", fmt=settings.log_format)
    try:
        asyncio.run(COMMANDS[args.command](args, settings))
    except OperatorError as problem:
        print(f"manage.py {args.command}: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
