"""Actors of the generation path. Thin: they take ids and call services."""

from __future__ import annotations

import uuid

import dramatiq

import runtime
from services import jobs
from services.runner import run_generation as run

# Provider calls may take minutes; the sweeper's per-model time limit is the real bound.
TIME_LIMIT_MS = 30 * 60 * 1000


@dramatiq.actor(actor_name="generation.run", max_retries=5, time_limit=TIME_LIMIT_MS)
async def run_generation(generation_id: str) -> None:
    rt = runtime.current()
    await run(uuid.UUID(generation_id), rt.catalogue, rt.registry, rt.store)


_ACTORS = {jobs.RUN: run_generation}


def _send(actor: str, args: tuple[str, ...], delay: int | None) -> None:
    _ACTORS[actor].send_with_options(args=args, delay=delay)


jobs.set_sender(_send)
