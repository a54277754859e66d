"""Crafted documents through the real server: a kilobyte of fragments that once took seconds of
CPU each (and held /healthz all that time) is refused at once, and the server keeps
answering."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

# Far longer than a refusal takes; far shorter than the 7 s one such document cost before.
ANSWERS_WITHIN = 3.0


def doubling_chain(name: str, links: int = 20) -> str:
    """The issue's document: each fragment spreads the next one twice (2^links spreads)."""
    fragments = " ".join(
        f"fragment {name}{i} on Query {{ ...{name}{i + 1} ...{name}{i + 1} }}" for i in range(links)
    )
    return f"query {{ ...{name}0 }} {fragments} fragment {name}{links} on Query {{ me {{ id }} }}"


async def test_fragment_chains_do_not_stall_the_server(stack: Running) -> None:
    http = stack.client.http
    sent = [
        asyncio.create_task(http.post("/graphql", json={"query": doubling_chain(f"F{n}x")}))
        for n in range(10)
    ]
    for _ in range(5):
        health = await asyncio.wait_for(http.get("/healthz"), ANSWERS_WITHIN)
        assert health.status_code == 200
    answers = await asyncio.wait_for(asyncio.gather(*sent), ANSWERS_WITHIN * 10)
    for answer in answers:
        assert answer.status_code == 200
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
