"""The partial-charge rule, in Python (the steps) and SQL (the one-statement completion)."""

from __future__ import annotations

import uuid

import orjson
import pytest
from tortoise import connections

from models.generation import Generation, GenerationKind
from services.generations.charges import charge, charged_in_full_sql


def _generation(kind: GenerationKind, requested: int) -> Generation:
    return Generation(
        id=uuid.uuid4(), kind=kind, cost=4 * requested, params={"numOutputs": requested}
    )


def test_a_partly_delivered_batch_is_charged_per_output():
    assert charge(_generation(GenerationKind.IMAGE, 4), 1) == 4
    assert charge(_generation(GenerationKind.IMAGE, 4), 4) is None
    assert charge(_generation(GenerationKind.MULTI_VIEW, 1), 1) is None


async def test_the_sql_form_agrees_with_the_rule(backend):
    if backend.name != "postgres":
        pytest.skip("the SQL form is PostgreSQL's (the one-statement completion)")
    connection = connections.get("default")
    sql = (
        f"SELECT {charged_in_full_sql('$3::int')} AS full "
        "FROM (SELECT $1::varchar AS kind, $2::jsonb AS params) AS generations"
    )
    for kind in (GenerationKind.IMAGE, GenerationKind.MULTI_VIEW):
        for requested in (1, 2, 4):
            for delivered in range(1, requested + 2):
                generation = _generation(kind, requested)
                params = orjson.dumps(generation.params).decode()
                rows = await connection.execute_query_dict(sql, [kind.value, params, delivered])
                assert rows[0]["full"] == (charge(generation, delivered) is None), (
                    kind,
                    requested,
                    delivered,
                )
