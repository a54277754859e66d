"""Sending background jobs after commit. The tasks layer plugs in the real sender at boot, so
services never import the actors that call them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from services.unit_of_work import after_commit

JobSender = Callable[[str], None]
_send_generation_run: JobSender | None = None


def set_generation_sender(sender: JobSender | None) -> None:
    global _send_generation_run
    _send_generation_run = sender


def enqueue_after_commit(generation_id: uuid.UUID) -> None:
    async def send() -> None:
        if _send_generation_run is None:
            raise RuntimeError("no job sender configured; the sweeper will re-enqueue")
        # Dramatiq's send is blocking I/O on the broker; keep the event loop free.
        await asyncio.to_thread(_send_generation_run, str(generation_id))

    after_commit(send)
