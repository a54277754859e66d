"""A worker's step that cannot reach the database is tried again with a short backoff for
as long as an outage of minutes lasts; any other failure five times, as before."""

from __future__ import annotations

import asyncpg
import pytest

from tasks import generation as actors
from tasks.retries import MAX_RETRIES, OUTAGE_RETRIES, retry_when
from tests.support.private_servers import free_port


async def database_down() -> BaseException:
    """What asyncpg raises for a server that does not answer (a real connection attempt)."""
    try:
        await asyncpg.connect(f"postgresql://kiln@127.0.0.1:{free_port()}/kiln", timeout=5)
    except BaseException as error:
        return error
    raise AssertionError("nothing listens there, yet it connected")


async def test_a_step_that_cannot_reach_the_database_is_tried_again_through_the_outage():
    outage = await database_down()
    assert retry_when(MAX_RETRIES, outage)
    assert retry_when(OUTAGE_RETRIES - 1, outage)
    assert not retry_when(OUTAGE_RETRIES, outage)


def test_a_bug_is_tried_five_times_as_before():
    bug = ValueError("a bug")
    assert retry_when(MAX_RETRIES - 1, bug)
    assert not retry_when(MAX_RETRIES, bug)


@pytest.mark.parametrize("name", sorted(actors.ACTORS))
def test_every_actor_of_the_generation_path_retries_outages(name):
    options = actors.ACTORS[name].options
    assert options["retry_when"] is retry_when
    assert options["max_backoff"] <= 5_000
