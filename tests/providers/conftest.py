from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.providers import Sink


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client an adapter under test sends through (to a fake provider server)."""
    async with httpx.AsyncClient() as http_client:
        yield http_client


@pytest.fixture
def sink() -> Sink:
    """Where the adapter under test reports its calls (tests read `sink.records`)."""
    return Sink()
