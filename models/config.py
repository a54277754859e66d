"""Tortoise configuration, shared by the server, the workers, the tests and the `tortoise` CLI."""

from __future__ import annotations

from typing import Any

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url

from settings import Settings, get_settings

MODEL_MODULES = [
    "models.user",
    "models.credits",
    "models.generation",
    "models.api_call",
    "models.error_event",
    "models.notification",
    "models.stats",
    "models.api_key",
]


class SessionlessConnection(asyncpg.Connection):
    """A pooled PostgreSQL connection returned to the pool without asyncpg's session reset.

    asyncpg resets every connection it takes back (`SELECT pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL`): one more round trip per checkout, twice per accepted
    generation. Kiln keeps no session state (no SET, LISTEN, advisory locks or cursors), so
    there is nothing to reset. An open transaction is still rolled back (asyncpg does that
    whatever the reset query)."""

    def get_reset_query(self) -> str:
        return ""


def _connection(url: str) -> str | dict[str, Any]:
    if not url.startswith("postgres://"):
        return url
    config = expand_db_url(url)
    config["credentials"]["connection_class"] = SessionlessConnection
    return config


def tortoise_config(settings: Settings) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(settings.effective_database_url)},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# Read by `uv run tortoise migrate` through [tool.tortoise] in pyproject.toml.
TORTOISE_ORM = tortoise_config(get_settings())


async def open_database(settings: Settings, *, migrate: bool) -> None:
    """Connect on the running loop (Tortoise binds connections to the loop that opens them)."""
    config = tortoise_config(settings)
    if settings.effective_database_url.startswith("sqlite://"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate:
        from tortoise.migrations.api import migrate as run_migrations

        await run_migrations(config=config)
    await Tortoise.init(config=config, _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()
