"""A worker process killed outright (SIGKILL, an OOM, a lost machine) mid-generation.

Kept in its own module so it runs after every other production test: the killed worker's
unacknowledged message stays in Redis until Dramatiq's heartbeat timeout requeues it, which
would hold up tests that wait for the queue to drain."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e


async def test_a_worker_killed_mid_generation_leaves_no_open_hold(stack: Running):
    if stack.kind != "production":
        pytest.skip("needs separate worker processes")
    account = await api.register(stack.client)
    created = await api.create(stack.client, account, model="local-slow")
    async with await api.GraphQLSocket.open(stack.ws_url, account.token) as socket:
        subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
        await subscription.collect_until(lambda m: m["generationUpdated"]["status"] == "PROCESSING")
    worker = stack.stack.process("worker")
    os.killpg(worker.popen.pid, signal.SIGKILL)  # no goodbye: the process group dies
    await asyncio.to_thread(stack.stack.restart, worker)
    # The restarted workers' sweeper fails the orphan once its 2 s time limit passes.
    final = (await api.watch(stack.ws_url, account, created["id"], within=30))[-1]
    assert final["status"] in ("FAILED", "COMPLETED")
    if final["status"] == "FAILED":
        assert final["error"]["code"] == "PROVIDER_TIMEOUT"
    balance = await api.balance(stack.client, account)
    assert balance["reserved"] == 0
    assert balance["available"] == (5 if final["status"] == "FAILED" else 4)
