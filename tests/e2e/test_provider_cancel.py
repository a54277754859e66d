"""Cancelling stops a queued provider's job at once, on both stacks, even when the next
poll is far away: `cancelGeneration` sends `generation.abandon` after it commits, and a
worker calls the provider's cancel endpoint. Here the route expects its jobs to take ten
minutes, so the first poll is ten minutes out (with webhooks on it would be a minute away;
the stacks run without PUBLIC_BASE_URL, so that mode is tested at the service level, in
tests/services/test_runner_cancel.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

MODEL = "black-forest-labs/flux-dev"  # the route of `queued-slow-image`
# A generation's versions: created, started, its provider job attached.
ATTACHED_VERSION = 3


async def test_a_cancel_reaches_the_provider_long_before_the_next_poll(stack: Running):
    account = await api.register(stack.client)
    before = set(stack.replicate.predictions)
    stack.replicate.outcome.polls = 50  # it would run for a long while
    try:
        created = await api.create(stack.client, account, model="queued-slow-image")
        async with asyncio.timeout(20):
            while True:
                data = await stack.client.data(api.GENERATION, {"id": created["id"]}, account.token)
                if data["generation"]["version"] >= ATTACHED_VERSION:
                    break
                await asyncio.sleep(0.1)
        [job_id] = [
            job
            for job, prediction in stack.replicate.predictions.items()
            if job not in before and prediction["model"] == MODEL
        ]
        await stack.client.data(api.CANCEL, {"id": created["id"]}, account.token)
        cancel_path = f"/v1/predictions/{job_id}/cancel"
        async with asyncio.timeout(20):
            while not stack.replicate.calls("POST", cancel_path):
                await asyncio.sleep(0.1)
    finally:
        stack.replicate.outcome.polls = 2
    assert len(stack.replicate.calls("POST", cancel_path)) == 1
    assert stack.replicate.predictions[job_id]["status"] == "canceled"
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}
