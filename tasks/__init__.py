"""Dramatiq actors. `dramatiq tasks` loads this module: it configures the broker from the
settings, then declares the actors on it."""

from tasks.broker import broker
from tasks.generation import poll_generation, resume_generation, run_generation

__all__ = ["broker", "poll_generation", "resume_generation", "run_generation"]
