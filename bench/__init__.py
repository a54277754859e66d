"""Benchmarks of Kiln against PostgreSQL and Redis (`uv run python -m bench.run`).

Not collected by pytest (outside tests/); timings are measured and reported, never asserted.
"""
