"""How the fetch tests call services.fetch: an image of at most 100 kB unless a test says
otherwise, so each call names only what that test is about."""

from __future__ import annotations

from typing import Any

import httpx

from services.fetch import Fetched, fetch

IMAGES = frozenset({"image/png", "image/jpeg", "image/webp"})
LOCAL = frozenset({"127.0.0.1"})  # the tests' own servers listen on loopback


async def fetch_image(
    client: httpx.AsyncClient, url: str, *, max_bytes: int = 100_000, **options: Any
) -> Fetched:
    return await fetch(client, url, max_bytes=max_bytes, allowed_types=IMAGES, **options)
