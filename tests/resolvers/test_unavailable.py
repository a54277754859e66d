"""A request that fails because Redis or the database is unreachable answers UNAVAILABLE with
retryAfter, is counted and not recorded as an error event; a genuine bug is still INTERNAL;
work that committed before the outage struck is not reported as failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from graphql import GraphQLError
from tortoise import connections

from models.error_event import ErrorEvent
from models.generation import Generation, GenerationStatus
from resolvers.errors import format_error
from schema.build import build_schema
from services import auth, error_events, errors, jobs
from services.rate_limits import RedisCounters
from tests.support.private_servers import PrivateRedis
from tests.support.schema import request_context

CREATE = 'mutation { createGeneration(input: {prompt: "a fox"}) { id status } }'


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture
async def dead_redis(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    """A client of a Redis that has just died."""
    client = aioredis.Redis.from_url(private_redis.url())
    await client.ping()
    private_redis.kill()
    yield client
    await client.aclose()


async def settled() -> None:
    """Recordings started in the background (schema.build) have been written."""
    for _ in range(3):
        await asyncio.sleep(0.01)
    await error_events.flush()


async def internal_occurrences() -> int:
    await settled()
    return sum(row.count for row in await ErrorEvent.filter(error_code="INTERNAL"))


async def recorded_events() -> int:
    await settled()
    return await ErrorEvent.all().count()


async def test_a_mutation_while_redis_is_down_is_served_with_limits_counted_here(
    backend, make_user, dead_redis
):
    """The rate limit is bookkeeping: with Redis down each process counts its own callers,
    and a request that needs only the database is served (its job, lost with Redis, is sent
    again by the sweeper)."""
    user = await make_user()
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    context.counters = RedisCounters(dead_redis)  # the operation rate limit needs Redis
    events = await recorded_events()

    result = await build_schema().execute(CREATE, context_value=context)

    assert result.errors is None, result.errors
    assert result.data["createGeneration"]["status"] == "QUEUED"  # type: ignore[index]
    assert await recorded_events() == events


async def test_rate_limits_still_hold_while_redis_is_down(backend, make_user, dead_redis):
    counters = RedisCounters(dead_redis)
    counts = [(await counters.hit("k", 60)).count for _ in range(3)]
    assert counts == [1, 2, 3]


async def test_an_accepted_generation_whose_enqueue_failed_is_returned(
    backend, make_user, dead_redis, monkeypatch
):
    async def send_through_dead_redis(actor: str, args: tuple[str, ...], delay: int | None):
        await dead_redis.ping()  # the broker is down: this raises

    monkeypatch.setattr(jobs, "_sender", send_through_dead_redis)
    user = await make_user()
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))

    result = await build_schema().execute(CREATE, context_value=context)

    assert result.errors is None, result.errors
    generation = result.data["createGeneration"]  # type: ignore[index]
    assert generation["status"] == "QUEUED"
    # Committed: the sweeper sends its job again (services.sweeper).
    row = await Generation.get(id=generation["id"])
    assert row.status is GenerationStatus.QUEUED


async def test_genuine_bugs_stay_internal_and_are_recorded(backend, make_user, monkeypatch):
    user = await make_user()
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))

    async def bad_sql(user_id: object) -> None:
        await connections.get("default").execute_query("SELEC balance FROM nowhere")

    async def missing_key(user_id: object) -> None:
        raise KeyError("balance")

    for broken in (bad_sql, missing_key):
        monkeypatch.setattr("services.credits.get_balance", broken)
        before = await internal_occurrences()
        result = await build_schema().execute(
            "{ creditBalance { available } }", context_value=context
        )
        assert result.errors is not None
        assert result.errors[0].formatted["extensions"]["code"] == "INTERNAL", broken.__name__
        assert await internal_occurrences() == before + 1


async def test_the_mapping_of_an_outage_and_of_the_domain_error(dead_redis):
    with pytest.raises(redis.exceptions.ConnectionError) as raised:
        await dead_redis.ping()
    for original, retry_after in ((raised.value, 5), (errors.Unavailable("database", 7), 7)):
        formatted = GraphQLError("raw", original_error=original)
        assert format_error(formatted, "req-1") is None  # not unexpected: nothing to record
        assert formatted.extensions == {"code": "UNAVAILABLE", "retryAfter": retry_after}
        assert "Connection" not in formatted.message
