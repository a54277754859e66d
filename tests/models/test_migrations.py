"""Migrations apply to databases that already have rows, as a deployment's do: the credit
accounts' version column (0006) is added to a filled table and continues each account from
the version its clients saw before (the id of its newest ledger entry)."""

from __future__ import annotations

import sqlite3
import uuid

from tests.support.migrations import migrate, postgres, scratch_postgres

BEFORE_VERSION = "0005_security_api_keys_priority"
USERS = (uuid.UUID(int=1), uuid.UUID(int=2))
FILL = [
    "INSERT INTO users (id, email, password_hash, role, created_at, priority) VALUES "
    f"('{USERS[0]}', 'a@example.com', 'h', 'USER', '2026-01-01', false), "
    f"('{USERS[1]}', 'b@example.com', 'h', 'USER', '2026-01-01', false)",
    "INSERT INTO credit_accounts (user_id, balance, reserved, updated_at) VALUES "
    f"('{USERS[0]}', 5, 0, '2026-01-01'), ('{USERS[1]}', 0, 0, '2026-01-01')",
    "INSERT INTO ledger_entries (user_id, kind, amount, held, balance_after, created_at) "
    f"VALUES ('{USERS[0]}', 'GRANT', 3, 0, 3, '2026-01-01'), "
    f"('{USERS[0]}', 'GRANT', 2, 0, 5, '2026-01-01')",
]


def test_the_account_version_is_added_to_filled_tables_on_sqlite(tmp_path):
    path = tmp_path / "kiln.sqlite3"
    migrate(f"sqlite://{path}", "models", BEFORE_VERSION)
    with sqlite3.connect(path) as connection:
        for statement in FILL:
            connection.execute(statement)
        newest = connection.execute("SELECT MAX(id) FROM ledger_entries").fetchone()[0]
    migrate(f"sqlite://{path}")
    with sqlite3.connect(path) as connection:
        rows = dict(connection.execute("SELECT user_id, version FROM credit_accounts"))
    assert rows == {str(USERS[0]): newest, str(USERS[1]): 0}


async def test_the_account_version_is_added_to_filled_tables_on_postgres():
    async with scratch_postgres("kiln_migrations") as url:
        migrate(url, "models", BEFORE_VERSION)
        [(newest,)] = await postgres(url, *FILL, "SELECT MAX(id) FROM ledger_entries")
        migrate(url)
        rows = dict(await postgres(url, "SELECT user_id, version FROM credit_accounts"))
        assert rows == {USERS[0]: newest, USERS[1]: 0}
