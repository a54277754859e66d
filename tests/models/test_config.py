"""The database wiring: PostgreSQL connections go back to the pool without asyncpg's session
reset (a round trip per checkout) and still come back out of any transaction."""

from __future__ import annotations

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from models.config import SessionlessConnection, tortoise_config
from settings import Settings


def test_postgres_uses_the_sessionless_connection_and_keeps_the_url_settings():
    config = tortoise_config(Settings(database_url="postgres://k@db:5433/kiln?ssl=true"))
    default = config["connections"]["default"]
    assert default["engine"] == "tortoise.backends.asyncpg"
    assert default["credentials"]["connection_class"] is SessionlessConnection
    assert (default["credentials"]["host"], default["credentials"]["port"]) == ("db", 5433)
    assert default["credentials"]["maxsize"] == "16"  # DATABASE_POOL_SIZE
    assert default["credentials"]["ssl"]
    sqlite = tortoise_config(Settings(database_url=""))["connections"]["default"]
    assert isinstance(sqlite, str) and sqlite.startswith("sqlite://")


async def test_a_released_connection_is_not_reset_but_leaves_no_transaction(backend):
    if backend.name != "postgres":
        pytest.skip("PostgreSQL connections only")
    client = connections.get("default")
    await client.execute_query("SELECT 1")  # the pool opens on first use
    pool = client._pool
    sent: list[str] = []

    def log(record) -> None:
        sent.append(record.query)

    async with pool.acquire() as raw:
        assert isinstance(raw._con, SessionlessConnection)
        raw.add_query_logger(log)
        await raw.execute("BEGIN")  # an unmanaged transaction left open
        await raw.execute("SELECT 1")
        connection = raw._con
    connection.remove_query_logger(log)
    # The release rolled the stray transaction back and sent nothing else.
    assert sent == ["BEGIN", "SELECT 1", "ROLLBACK"]
    with pytest.raises(ZeroDivisionError):
        async with in_transaction():
            await client.execute_query("SELECT 1")
            raise ZeroDivisionError
    async with pool.acquire() as again:
        assert not again.is_in_transaction()
