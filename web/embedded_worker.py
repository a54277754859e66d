"""Embedded mode's worker: Dramatiq worker threads inside the server process, running the
actors' coroutines on the server's own event loop (where Tortoise's connections live)."""

from __future__ import annotations

import asyncio
import logging

import dramatiq
from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from starlette.requests import Request

log = logging.getLogger("kiln.embedded_worker")


class RunningLoop(EventLoopThread):
    """Lets Dramatiq's async actors run on the server's own event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.logger = log
        self.interrupt_check_ival = 0.1


def start_embedded_worker(threads: int) -> dramatiq.Worker:
    """Worker threads on the configured (stub) broker; call from the server's event loop."""
    set_event_loop_thread(RunningLoop(asyncio.get_running_loop()))
    worker = dramatiq.Worker(dramatiq.get_broker(), worker_threads=threads)
    worker.start()
    return worker


async def stop_embedded_worker(worker: dramatiq.Worker) -> None:
    await asyncio.to_thread(worker.stop)
    set_event_loop_thread(None)


def embedded_worker_alive(request: Request) -> bool:
    worker = getattr(request.app.state, "embedded_worker", None)
    return worker is not None and any(t.is_alive() for t in worker.workers)
