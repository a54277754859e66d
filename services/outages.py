"""Telling an outage of a dependency from a bug: the one place where the failures that the
database (asyncpg, Tortoise), Redis (redis-py) and the broker (Dramatiq) raise when their
server is unreachable become `Unavailable`, which clients see as UNAVAILABLE (or 503) with a
time to try again, counted but not recorded as an error event per request (recording would
need the database, and an outage is not a new kind of error).

What each library raises was checked by killing real servers (tests/services/test_outages.py):
- redis-py: `redis.exceptions.ConnectionError` ("Connection closed by server.", "Error 111
  connecting ...") and `TimeoutError` when a socket timeout is set;
- asyncpg: `ConnectionRefusedError` (an OSError) for a new connection, and
  `ConnectionDoesNotExistError` for one in use ("connection was closed in the middle of
  operation"), then `InterfaceError("connection is closed")` for that connection's next call
  (the message is the only thing that tells it from misuse, such as a released connection,
  which stays a bug); while the server shuts down or starts, `AdminShutdownError` and
  `CannotConnectNowError`; Tortoise lets these through unwrapped (it wraps only SQL errors,
  as OperationalError, which stay bugs);
- Dramatiq's Redis broker: `ConnectionClosed` (a `BrokerConnectionError`).
An OSError counts only when it was raised inside one of those clients: a missing file is
not an outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import TracebackType

import asyncpg
import dramatiq.errors
import redis.exceptions
from tortoise.exceptions import DBConnectionError

from observability.metrics import DEPENDENCY_UNAVAILABLE
from services.errors import Unavailable

log = logging.getLogger("kiln.outages")

# What clients are told to wait before trying again: long enough not to hammer a dependency
# that is restarting, short enough that a blink costs them little.
RETRY_AFTER_SECONDS = 5
# An outage is logged once per dependency in this many seconds; every request is counted.
LOG_EVERY_SECONDS = 60.0

_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08, connection lost
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    DBConnectionError,
)
_REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (a restart loading data)
    redis.exceptions.TimeoutError,
)
_BROKER_ERRORS: tuple[type[BaseException], ...] = (dramatiq.errors.BrokerConnectionError,)
# Where an OSError was raised decides whose outage it is.
_CLIENT_MODULES = (
    ("asyncpg", "database"),
    ("tortoise", "database"),
    ("redis", "redis"),
    ("dramatiq", "broker"),
)
_last_logged: dict[str, float] = {}


def as_unavailable(error: BaseException) -> Unavailable | None:
    """The Unavailable that `error` (or an error it was raised from) stands for, or None when
    it is not a connection-level failure of a dependency."""
    for link in _causes(error):
        if isinstance(link, Unavailable):
            return link
        dependency = _dependency(link)
        if dependency is not None:
            return Unavailable(dependency, RETRY_AFTER_SECONDS)
    return None


def note_unavailable(unavailable: Unavailable, cause: BaseException | None = None) -> None:
    """Count a request answered UNAVAILABLE; log the outage once a minute per dependency."""
    DEPENDENCY_UNAVAILABLE.labels(unavailable.dependency).inc()
    now = time.monotonic()
    last = _last_logged.get(unavailable.dependency)
    if last is not None and now - last < LOG_EVERY_SECONDS:
        return
    _last_logged[unavailable.dependency] = now
    log.warning(
        "%s unreachable: requests are answered UNAVAILABLE (%s); counted in "
        "kiln_dependency_unavailable_total, logged again in %.0f s at the earliest",
        unavailable.dependency,
        f"{type(cause).__name__}: {cause}" if cause is not None else "no cause",
        LOG_EVERY_SECONDS,
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from (`raise ... from`), without cycles. The implicit
    context of an error raised while handling another is not followed: a bug in an except
    block that handled a lost connection is still a bug."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__


def _dependency(error: BaseException) -> str | None:
    if isinstance(error, _DATABASE_ERRORS):
        return "database"
    if isinstance(error, asyncpg.exceptions.InterfaceError) and str(error).endswith(
        "connection is closed"
    ):
        return "database"
    if isinstance(error, _REDIS_ERRORS):
        return "redis"
    if isinstance(error, _BROKER_ERRORS):
        return "broker"
    if isinstance(error, OSError):
        return _raised_in_client(error.__traceback__)
    return None


def _raised_in_client(traceback: TracebackType | None) -> str | None:
    """The dependency whose client code the traceback passes through, if any."""
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        for prefix, dependency in _CLIENT_MODULES:
            if module == prefix or module.startswith(prefix + "."):
                return dependency
        traceback = traceback.tb_next
    return None
