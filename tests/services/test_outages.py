"""What each library really raises when its server is down (private servers, killed), and
that those failures, and only those, are taken for an outage."""

from __future__ import annotations

import json
from collections.abc import Iterator

import asyncpg
import dramatiq.errors
import pytest
import redis.asyncio as aioredis
from tortoise.backends.asyncpg import AsyncpgDBClient
from tortoise.exceptions import IntegrityError, OperationalError

from services.errors import Unavailable
from services.outages import as_unavailable
from tests.support.private_servers import PrivatePostgres, PrivateRedis


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


async def failure_of(call) -> BaseException:
    try:
        await call()
    except Exception as error:
        return error
    raise AssertionError("it did not fail")


async def test_redis_down_is_an_outage_of_redis():
    with PrivateRedis() as server:
        client = aioredis.Redis.from_url(server.url())
        script = client.register_script("return 1")
        await client.ping()
        server.kill()
        try:
            for call in (client.ping, script, client.ping):  # in use, then reconnecting
                found = as_unavailable(await failure_of(call))
                assert isinstance(found, Unavailable) and found.dependency == "redis"
                assert found.retry_after >= 1
        finally:
            await client.aclose()


async def test_postgres_down_is_an_outage_of_the_database(private_postgres):
    client = AsyncpgDBClient(
        connection_name="outage",
        host="127.0.0.1",
        port=private_postgres.port,
        user="postgres",
        password="",
        database="postgres",
        minsize=1,
        maxsize=2,
    )
    await client.create_connection(with_db=True)
    raw = await asyncpg.connect(private_postgres.url())
    try:
        # While it runs, a genuine bug is not an outage (Tortoise wraps it as OperationalError).
        syntax = await failure_of(lambda: client.execute_query("SELEC 1"))
        assert isinstance(syntax, OperationalError) and as_unavailable(syntax) is None
        private_postgres.stop()
        failures = [
            await failure_of(lambda: client.execute_query("SELECT 1")),  # through Tortoise
            await failure_of(lambda: raw.fetchval("SELECT 1")),  # a connection in use
            await failure_of(lambda: asyncpg.connect(private_postgres.url())),  # a new one
        ]
        for failure in failures:
            found = as_unavailable(failure)
            assert isinstance(found, Unavailable), repr(failure)
            assert found.dependency == "database"
        private_postgres.start()
        assert (await client.execute_query("SELECT 1"))[0] == 1  # and it comes back
    finally:
        raw.terminate()
        await client.close()


def test_bugs_are_not_outages():
    for error in (
        KeyError("balance"),
        ValueError("bad"),
        OperationalError("relation nowhere does not exist"),
        IntegrityError("duplicate key"),
        FileNotFoundError(2, "No such file"),  # an OSError, but not from a database or Redis
        json.JSONDecodeError("x", "doc", 0),
    ):
        assert as_unavailable(error) is None, repr(error)


def test_a_broker_connection_error_is_an_outage_of_the_broker():
    found = as_unavailable(dramatiq.errors.ConnectionClosed(OSError("gone")))
    assert isinstance(found, Unavailable) and found.dependency == "broker"
