"""Starts Kiln's runtime inside a `dramatiq tasks` worker process, on the event loop thread
that the AsyncIO middleware runs the actors on (Tortoise binds connections to that loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from settings import Settings, refuse_to_start

log = logging.getLogger(__name__)


class WorkerBoot(Middleware):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lease_watch: asyncio.Task[None] | None = None

    def after_process_boot(self, broker: Any) -> None:
        # A `dramatiq tasks` worker process has loaded the broker: from here on its lines are
        # Kiln's (JSON lines with the request, generation and provider in context), written
        # through the handler Dramatiq installed (it pipes them to the parent process).
        from observability.logs import setup_logging

        setup_logging(
            level=self.settings.log_level, fmt=self.settings.log_format, keep_handlers=True
        )
        # Before any thread starts, the API's refusal: no process of a production deployment
        # runs with public, missing or weak secrets (the message reaches the worker's log).
        try:
            refuse_to_start(self.settings, "worker")
        except SystemExit as refused:
            log.critical("%s", refused)
            raise

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        # Before the worker's consumers start: a backlog waiting in Redis must find the
        # runtime ready (AsyncIO's own before-boot hook, earlier in the stack, started the loop).
        from runtime import start_runtime
        from services import workflows
        from services.generations import leases

        async def boot() -> None:
            runtime = await start_runtime(self.settings, migrate=False)
            runtime.start_sweeper()
            # Steps whose worker died are looked for more often than the sweeper runs.
            self._lease_watch = asyncio.create_task(
                leases.watch_forever(workflows.waits_on_parts), name="kiln-leases"
            )

        self._loop_thread().run_coroutine(boot())
        log.info("Kiln worker runtime started")

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        from runtime import stop_runtime

        async def shutdown() -> None:
            if self._lease_watch is not None:
                self._lease_watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._lease_watch
            await stop_runtime()

        self._loop_thread().run_coroutine(shutdown())

    @staticmethod
    def _loop_thread() -> Any:
        thread = get_event_loop_thread()
        if thread is None:
            raise RuntimeError("WorkerBoot needs the AsyncIO middleware before it")
        return thread
