"""Fixtures of the end-to-end suite: one real Kiln stack per parameter, shared by the
session. Every test taking `stack` runs once on the embedded stack and once on production."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.client import KilnClient
from tests.e2e.stack import Stack, StackError, start_embedded, start_production
from tests.support.services import need, pg_url, recreate_database, redis_url

E2E_DATABASE = "kiln_e2e"
E2E_REDIS_DB = 15
LOG_TAIL_LINES = 150


@dataclass
class Running:
    """What a test gets: the processes and a client bound to their API."""

    stack: Stack
    client: KilnClient

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
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture(scope="session", params=["embedded", "production"])
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    kind: str = request.param
    data_dir = tmp_path_factory.mktemp(f"kiln-{kind}")
    try:
        if kind == "embedded":
            started = await asyncio.to_thread(start_embedded, data_dir)
        else:
            need("postgres")
            need("redis")
            await recreate_database(E2E_DATABASE)
            await _flush_redis(redis_url(E2E_REDIS_DB))
            started = await asyncio.to_thread(
                start_production, data_dir, pg_url(E2E_DATABASE), redis_url(E2E_REDIS_DB)
            )
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    running = Running(started, KilnClient(started.base_url))
    failed_before = request.session.testsfailed
    try:
        yield running
    finally:
        await running.client.aclose()
        await asyncio.to_thread(started.stop)
        if request.session.testsfailed > failed_before:
            _print_outside_capture(request.config, f"\n{started.logs()}\n")


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
