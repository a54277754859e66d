"""Shared fixtures: a migrated database on each backend (SQLite and PostgreSQL), with the
in-process hub and a temporary output store, as the services see them in a real process."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE

from models.config import close_database, open_database
from models.user import Role, User
from realtime.hub import InProcessHub, set_hub
from services import auth, credits, events, jobs
from settings import Settings, get_settings
from storage import set_store
from storage.local import LocalStore
from tests.support import fast_path as fast_path_modes
from tests.support.services import drop_database, pg_url, recreate_database, run_database


@dataclass
class Backend:
    name: str
    settings: Settings
    hub: InProcessHub
    store: LocalStore
    # Every job the services sent: (actor, args, delay in ms).
    sent: list[tuple[str, tuple[str, ...], int | None]] = field(default_factory=list)

    @property
    def sent_jobs(self) -> list[str]:
        """The generation ids sent to `generation.run`, in order."""
        return [args[0] for actor, args, _ in self.sent if actor == jobs.RUN]


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    data_dir: Path = tmp_path_factory.mktemp(f"kiln-{request.param}")
    if request.param == "postgres":
        database = run_database("kiln_test")
        await recreate_database(database)
        # A database URL makes settings production-like: they must bring their own secrets
        # (embedded ones are made under data_dir), and /metrics is opened on purpose.
        settings = Settings(
            database_url=pg_url(database),
            data_dir=data_dir,
            jwt_secret=secrets.token_urlsafe(48),
            api_key_pepper=secrets.token_urlsafe(48),
            metrics_public=True,
        )
    else:
        settings = Settings(database_url="", data_dir=data_dir)
    await open_database(settings, migrate=True)
    hub = InProcessHub()
    store = LocalStore(settings.media_dir)
    set_hub(hub)
    set_store(store)
    result = Backend(request.param, settings, hub, store)

    async def record_job(actor: str, args: tuple[str, ...], delay: int | None) -> None:
        result.sent.append((actor, args, delay))

    jobs.set_sender(record_job)
    # Jobs and messages leave one by one, through the recording sender and this hub, even
    # after a test imported `tasks` (which plugs in the Redis transport).
    events.set_transport(None)
    try:
        yield result
    finally:
        jobs.set_sender(None)
        set_hub(None)
        set_store(None)
        # Models and executors cache their backend's SQL dialect; forget it before the next.
        await Tortoise._reset_apps()
        await close_database()
        EXECUTOR_CACHE.clear()
        if request.param == "postgres":
            await drop_database(settings.database_url.rsplit("/", 1)[1])


@pytest.fixture
def fast_path() -> bool:
    """Whether the test runs with the fast path on (tests/support/fast_path.py)."""
    return fast_path_modes.default()


@pytest.fixture(autouse=True)
def fast_path_switch(
    request: pytest.FixtureRequest, fast_path: bool, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The test's settings have FAST_PATH_ENABLED as its mode says: the process's settings
    (a schema built without settings), the backend's and the schema tests' world's."""
    monkeypatch.setenv("FAST_PATH_ENABLED", "true" if fast_path else "false")
    get_settings.cache_clear()
    for name in ("backend", "world"):
        if name in request.fixturenames:
            holder = request.getfixturevalue(name)
            switched = holder.settings.model_copy(update={"fast_path_enabled": fast_path})
            monkeypatch.setattr(holder, "settings", switched)
    yield
    get_settings.cache_clear()


@pytest.fixture
async def make_user(backend: Backend):
    async def make(*, credits: int = 5, role: Role = Role.USER) -> User:
        settings = backend.settings.model_copy(update={"signup_grant": credits})
        return await auth.register(
            f"user-{uuid.uuid4().hex[:12]}@example.com",
            "correct horse battery",
            settings,
            role=role,
        )

    return make


@pytest.fixture(autouse=True)
async def ledger_stays_balanced(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every test that touched a database, every account still equals its ledger."""
    yield
    if "backend" not in request.fixturenames:
        return
    audit = await credits.audit()
    assert audit.ok, f"credit audit failed after {request.node.name}: {audit.mismatches}"
