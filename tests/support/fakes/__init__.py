"""Fake third-party AI providers, each speaking its provider's real wire format over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from starlette.types import ASGIApp

from tests.support.fake_server import serve


class Served(Protocol):
    base_url: str

    @property
    def app(self) -> ASGIApp: ...


F = TypeVar("F", bound=Served)


@contextmanager
def served(fake: F) -> Iterator[F]:
    """The fake, serving on a local port, its `base_url` set (the URLs it hands out use it)."""
    with serve(fake.app) as base_url:
        fake.base_url = base_url
        yield fake
