"""Actors of the generation path. Thin: they take ids and call services."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq

import runtime
from services import jobs, runner, workflows
from services.generations import leases
from tasks.retries import RETRY_OPTIONS

# Provider calls may take minutes; the sweeper's per-model time limit is the real bound.
TIME_LIMIT_MS = 30 * 60 * 1000


@dramatiq.actor(actor_name=jobs.RUN, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def run_generation(generation_id: str, lease: str = "", resent: str = "") -> None:
    """`lease`: the lease the sweeper gave this message when it sent the step again ("" when
    the generation was only queued); `resent`: the sweeper sent it again while it was queued
    (its mark is cleared: the message is off the queue)."""
    if resent:
        await jobs.resend_picked_up(generation_id)
    rt = runtime.current()
    await runner.run_generation(
        uuid.UUID(generation_id), rt.catalogue, rt.providers, rt.store, leases.token_of(lease)
    )


@dramatiq.actor(
    actor_name=jobs.RUN_PRIORITY,
    queue_name=jobs.PRIORITY_QUEUE,
    time_limit=TIME_LIMIT_MS,
    **RETRY_OPTIONS,
)
async def run_priority_generation(generation_id: str, lease: str = "", resent: str = "") -> None:
    """generation.run for priority accounts, on its own queue."""
    if resent:
        await jobs.resend_picked_up(generation_id)
    rt = runtime.current()
    await runner.run_generation(
        uuid.UUID(generation_id), rt.catalogue, rt.providers, rt.store, leases.token_of(lease)
    )


@dramatiq.actor(actor_name=jobs.POLL, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def poll_generation(
    generation_id: str, attempt: str, pending_at: str = "", lease: str = "", resent: str = ""
) -> None:
    """`pending_at`: seconds into the job when the previous poll found it pending ("" for
    the first poll, and in messages sent before this argument existed). `lease`: the lease
    the step was passed on with (services/generations/leases.py); `resent`: the sweeper sent
    it again after the step's lease lapsed (its mark is cleared: the message is off the queue)."""
    if resent:
        await jobs.resend_picked_up(generation_id)
    rt = runtime.current()
    await runner.poll(
        uuid.UUID(generation_id),
        int(attempt),
        rt.catalogue,
        rt.providers,
        rt.store,
        pending_at=float(pending_at) if pending_at else None,
        token=leases.token_of(lease),
    )


@dramatiq.actor(actor_name=jobs.RESUME, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def resume_generation(generation_id: str, attempt: str, route: str, lease: str = "") -> None:
    rt = runtime.current()
    await runner.resume(
        uuid.UUID(generation_id),
        int(attempt),
        int(route),
        rt.catalogue,
        rt.providers,
        rt.store,
        leases.token_of(lease),
    )


@dramatiq.actor(actor_name=jobs.ABANDON, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def abandon_generation(generation_id: str, attempt: str) -> None:
    """Stop the provider job of a generation that ended while it ran."""
    rt = runtime.current()
    await runner.abandon(uuid.UUID(generation_id), int(attempt), rt.catalogue, rt.providers)


@dramatiq.actor(actor_name=jobs.VIEWS, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def start_workflow_views(generation_id: str, attempt: str) -> None:
    rt = runtime.current()
    await workflows.start_views(uuid.UUID(generation_id), int(attempt), rt.catalogue, rt.store)


@dramatiq.actor(actor_name=jobs.ADVANCE, time_limit=TIME_LIMIT_MS, **RETRY_OPTIONS)
async def advance_workflow(generation_id: str, attempt: str) -> None:
    await workflows.advance(uuid.UUID(generation_id), int(attempt))


ACTORS: dict[str, Any] = {
    jobs.RUN: run_generation,
    jobs.RUN_PRIORITY: run_priority_generation,
    jobs.POLL: poll_generation,
    jobs.RESUME: resume_generation,
    jobs.ABANDON: abandon_generation,
    jobs.VIEWS: start_workflow_views,
    jobs.ADVANCE: advance_workflow,
}
