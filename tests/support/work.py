"""Counting work instead of timing it: the Python function calls a piece of code makes, and
GraphQL documents measured in tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from graphql.language import Lexer, Source, TokenKind


class TooMuchWork(AssertionError):
    pass


@dataclass
class Calls:
    count: int = 0
    exceeded: bool = False  # stopped at the limit (the code may have caught the exception)


@contextmanager
def counted_calls(limit: int) -> Iterator[Calls]:
    """Counts the Python function calls made inside the block (by this thread), and stops the
    block with TooMuchWork once they pass `limit`: code that would take minutes fails at
    once instead."""
    calls = Calls()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls.count += 1
            if calls.count > limit:
                calls.exceeded = True
                sys.setprofile(None)
                raise TooMuchWork(f"more than {limit} calls")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def tokens(document: str) -> int:
    """The tokens graphql-core's parser counts against MAX_QUERY_TOKENS."""
    lexer = Lexer(Source(document))
    count = 0
    while lexer.advance().kind != TokenKind.EOF:
        count += 1
    return count
