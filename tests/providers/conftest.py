from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client an adapter under test sends through (to a fake provider server)."""
    async with httpx.AsyncClient() as http_client:
        yield http_client
