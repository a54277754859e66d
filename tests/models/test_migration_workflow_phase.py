"""Migration 0007 gives a workflow's phase a column of its own: existing multi-view
parents get the phase their params, stage and status said they were at, and `params` keeps
everything but the old key."""

from __future__ import annotations

import json
import sqlite3
import uuid

from tests.support.migrations import migrate, postgres, scratch_postgres

BEFORE = "0006_credit_account_version"
USER = uuid.UUID(int=1)
VIEWS, ANALYSING, AWAITING, DRAWING, PLAIN = (uuid.UUID(int=n) for n in range(10, 15))
ROWS = [
    # id, kind, status, stage, params
    (VIEWS, "MULTI_VIEW", "PROCESSING", "drawing the views", {"phase": "views", "seed": 3}),
    (ANALYSING, "MULTI_VIEW", "PROCESSING", "analysing the front view", {"seed": 3}),
    (AWAITING, "MULTI_VIEW", "AWAITING_APPROVAL", "awaiting approval", {"feedback": ["x"]}),
    (DRAWING, "MULTI_VIEW", "PROCESSING", "rendering", {}),
    (PLAIN, "IMAGE", "COMPLETED", "completed", {"numOutputs": 1}),
]
EXPECTED = {
    VIEWS: ("VIEWS", {"seed": 3}),
    ANALYSING: ("ANALYSIS", {"seed": 3}),
    AWAITING: ("APPROVAL", {"feedback": ["x"]}),
    DRAWING: (None, {}),
    PLAIN: (None, {"numOutputs": 1}),
}
USER_ROW = (
    "INSERT INTO users (id, email, password_hash, role, created_at, priority) VALUES "
    f"('{USER}', 'a@example.com', 'h', 'USER', '2026-01-01', false)"
)


def generation_rows() -> list[str]:
    return [
        "INSERT INTO generations (id, user_id, kind, status, progress, stage, model, prompt, "
        "params, cost, attempts, version, created_at, queued_at) VALUES "
        f"('{id_}', '{USER}', '{kind}', '{status}', 0.2, '{stage}', 'local-image', 'a bag', "
        f"'{json.dumps(params)}', 3, 1, 1, '2026-01-01', '2026-01-01')"
        for id_, kind, status, stage, params in ROWS
    ]


def test_phases_come_from_params_stage_and_status_on_sqlite(tmp_path):
    path = tmp_path / "kiln.sqlite3"
    migrate(f"sqlite://{path}", "models", BEFORE)
    with sqlite3.connect(path) as connection:
        for statement in [USER_ROW, *generation_rows()]:
            connection.execute(statement)
    migrate(f"sqlite://{path}")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT id, phase, params FROM generations").fetchall()
    assert {uuid.UUID(id_): (phase, json.loads(params)) for id_, phase, params in rows} == (
        EXPECTED
    )


async def test_phases_come_from_params_stage_and_status_on_postgres():
    async with scratch_postgres("kiln_migration_phase") as url:
        migrate(url, "models", BEFORE)
        await postgres(url, USER_ROW, *generation_rows())
        migrate(url)
        rows = await postgres(url, "SELECT id, phase, params FROM generations")
        assert {r["id"]: (r["phase"], json.loads(r["params"])) for r in rows} == EXPECTED
