"""Fixtures of the end-to-end suite: one real Kiln stack per parameter, shared by the
session. Every test taking `stack` runs once on the embedded stack and once on production."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.client import KilnClient
from tests.e2e.fake_provider import FakeProvider, fake_provider
from tests.e2e.stack import (
    REDIS_NAMESPACE,
    REPLICATE_TOKEN,
    Stack,
    StackError,
    create_admin,
    provider_env,
    start_embedded,
    start_production,
)
from tests.support.fake_server import serve
from tests.support.fakes.replicate import FakeReplicate
from tests.support.migrations import scratch_postgres
from tests.support.private_servers import PrivatePostgres, PrivateRedis
from tests.support.services import need, redis_url

E2E_DATABASE = "kiln_e2e"
ADMIN_PASSWORD = "an admin password"
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { token }
}"""
AUDIT = "query { creditAudit { ok accounts mismatches { userId balance ledgerSum } } }"
E2E_REDIS_DB = 15
LOG_TAIL_LINES = 150


@dataclass
class Running:
    """What a test gets: the processes and a client bound to their API."""

    stack: Stack
    client: KilnClient
    admin_token: str
    provider: FakeProvider
    replicate: FakeReplicate

    @property
    def kind(self) -> str:
        return self.stack.kind

    @property
    def ws_url(self) -> str:
        return self.stack.ws_url

    @property
    def base_url(self) -> str:
        return self.stack.base_url


async def _flush_redis(url: str) -> None:
    """Forget this run's namespace only: other runs may share the Redis db."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=f"{REDIS_NAMESPACE}*"):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def provider() -> Iterator[FakeProvider]:
    with fake_provider() as fake:
        yield fake


class ServedReplicate(FakeReplicate):
    url = ""  # its API base, once served


# Private servers for the tests that kill or stop Redis or PostgreSQL (test_outages.py,
# test_worker_crash.py): module-scoped, so each such module has servers of its own.
@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        yield server


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


@pytest.fixture(scope="session")
def replicate() -> Iterator[ServedReplicate]:
    fake = ServedReplicate(REPLICATE_TOKEN)
    with serve(fake.app) as url:
        fake.url = f"{url}/v1"
        yield fake


@pytest.fixture(scope="session", params=["embedded", "production"])
async def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    provider: FakeProvider,
    replicate: ServedReplicate,
) -> AsyncIterator[Running]:
    kind: str = request.param
    extra_env = provider_env(provider.url, replicate.url)
    data_dir = tmp_path_factory.mktemp(f"kiln-{kind}")
    async with AsyncExitStack() as resources:  # the database outlives the stack using it
        try:
            if kind == "embedded":
                started = await asyncio.to_thread(start_embedded, data_dir, extra_env)
            else:
                need("redis")
                database_url = await resources.enter_async_context(scratch_postgres(E2E_DATABASE))
                await _flush_redis(redis_url(E2E_REDIS_DB))
                started = await asyncio.to_thread(
                    start_production, data_dir, database_url, redis_url(E2E_REDIS_DB), extra_env
                )
            admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
            await asyncio.to_thread(create_admin, started, admin_email, ADMIN_PASSWORD)
        except StackError as error:
            pytest.fail(str(error), pytrace=False)
        client = KilnClient(started.base_url)
        login = await client.data(LOGIN, {"email": admin_email, "password": ADMIN_PASSWORD})
        running = Running(started, client, login["login"]["token"], provider, replicate)
        failed_before = request.session.testsfailed
        try:
            yield running
        finally:
            await running.client.aclose()
            await asyncio.to_thread(started.stop)
            if request.session.testsfailed > failed_before:
                _print_outside_capture(request.config, f"\n{started.logs()}\n")


@pytest.fixture(autouse=True)
async def books_balance(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After every end-to-end test, the admin's credit audit proves every account equals
    its ledger."""
    yield
    if "stack" not in request.fixturenames:
        return
    running: Running = request.getfixturevalue("stack")
    data = await running.client.data(AUDIT, token=running.admin_token)
    assert data["creditAudit"]["ok"], data["creditAudit"]


def _print_outside_capture(config: pytest.Config, text: str) -> None:
    capture: Any = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        sys.stderr.write(text)
        return
    with capture.global_and_fixture_disabled():
        sys.stderr.write(text)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries the tail of its stack's process logs."""
    report = yield
    if report.failed:
        running = getattr(item, "funcargs", {}).get("stack")
        if isinstance(running, Running):
            report.sections.append(
                (
                    f"kiln {running.kind} logs (last {LOG_TAIL_LINES} lines each)",
                    running.stack.logs(LOG_TAIL_LINES),
                ),
            )
    return report
