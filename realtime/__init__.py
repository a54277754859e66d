"""Pub/sub: one hub per process, fanned out in memory to every local subscriber."""
