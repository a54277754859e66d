"""Which ways the tests run the fast path (fastpath/, FAST_PATH_ENABLED).

KILN_TEST_FAST_PATH=on|off runs every test that way. Unset, tests/schema and tests/resolvers
run both ways (their conftest parametrizes `fast_path`), the end-to-end production stack runs
it on and the embedded stack off (tests/e2e/stack.py), and every other test on, as deployed.
"""

from __future__ import annotations

import os

MODES = {"on": True, "off": False}
CHOSEN = os.environ.get("KILN_TEST_FAST_PATH") or None
if CHOSEN not in (None, *MODES):
    raise RuntimeError(f"KILN_TEST_FAST_PATH must be on or off, not {CHOSEN!r}")


def both_ways() -> list[str]:
    """The modes of a test that runs both ways."""
    return [CHOSEN] if CHOSEN else list(MODES)


def default() -> bool:
    """The mode of every other test."""
    return MODES[CHOSEN or "on"]


def stack_setting(stack_default: bool) -> str:
    """FAST_PATH_ENABLED for an end-to-end stack that runs `stack_default` unless chosen."""
    return "true" if (MODES[CHOSEN] if CHOSEN else stack_default) else "false"


# A page of generations selecting every kind of field the projections complete: leaves,
# aliases, a directive on a variable, nested objects and lists, a fragment.
PAGE = """
query Page($first: Int!, $withOutputs: Boolean!) {
  generations(first: $first) {
    __typename
    edges {
      cursor
      node {
        __typename id kind status progress stage model preset provider prompt negativePrompt
        params cost attempts version createdAt startedAt completedAt
        shown: status
        outputs @include(if: $withOutputs) { index url contentType sizeBytes width height text }
        error { code message }
        parent { id }
        ...Family
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
fragment Family on Generation { children { id status } }
"""
