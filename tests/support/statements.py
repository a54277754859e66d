"""Counting what reaches PostgreSQL, and draining a hub mailbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest


@contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL meanwhile (BEGIN and COMMIT included)."""
    seen: list[str] = []
    execute, do_execute = asyncpg.Connection.execute, asyncpg.Connection._do_execute

    def record(query: object) -> None:
        text = " ".join(str(query).split())
        if not text.startswith("SELECT pg_advisory_unlock_all"):  # the pool's reset
            seen.append(text)

    async def counted_execute(self, query, *args, **kwargs):
        if not args:  # with arguments it goes through _do_execute, counted there
            record(query)
        return await execute(self, query, *args, **kwargs)

    def counted_do_execute(self, query, *args, **kwargs):
        record(query)
        return do_execute(self, query, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(asyncpg.Connection, "execute", counted_execute)
        patch.setattr(asyncpg.Connection, "_do_execute", counted_do_execute)
        yield seen


async def drain(mailbox) -> list[dict]:
    seen: list[dict] = []

    async def collect() -> None:
        async for message in mailbox:
            seen.append(message)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), 0.2)
    return seen
