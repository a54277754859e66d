"""Dramatiq actors. `dramatiq tasks` loads this module: it configures the broker from the
settings, then declares the actors on it."""

from tasks.broker import broker
from tasks.generation import poll_generation, resume_generation, run_generation
from tasks.outbox import send_job, send_together  # noqa: F401  (plugs them into services)

__all__ = ["broker", "poll_generation", "resume_generation", "run_generation"]
