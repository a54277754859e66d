"""The logs of `dramatiq tasks` worker processes are JSON lines, as the README promises, with
the generation a line was written for in its context. Dramatiq's own handler stays in place
(it carries each process's lines to the parent through a pipe); only the parent process's
few lines about starting and stopping its processes are Dramatiq's plain text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

# Dramatiq's text format, kept by the parent process: "[time] [PID n] [thread] [logger] ...".
PARENT_LINE = "[dramatiq.MainProcess]"


def worker_records(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        if not line.strip() or PARENT_LINE in line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a worker process wrote a line that is not JSON: {line!r}")
    return records


async def test_worker_processes_log_json_lines_with_the_generation_in_context(stack: Running):
    if stack.kind != "production":
        pytest.skip("only production has `dramatiq tasks` worker processes")
    account = await api.register(stack.client)
    created = await api.create(stack.client, account, model="local-broken")
    last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert last["status"] == "FAILED", last

    records = worker_records(stack.stack.process("worker").output())
    assert {"time", "level", "logger", "message"} <= set(records[0])
    about_it = [r for r in records if r.get("generation_id") == created["id"]]
    assert any(
        r["level"] == "WARNING"
        and r["logger"] == "services.provider_routing.failover"
        and "failed" in r["message"]
        for r in about_it
    ), about_it
