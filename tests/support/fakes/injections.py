"""Scripted answers for the fakes' next matching request (`inject`): a status, a body,
headers, a delay, used once, before the fake's normal handling (and its auth check)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Injection:
    method: str
    path: str
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay: float = 0.0


async def injected(injections: list[Injection], request: Request) -> Response | None:
    """The answer scripted for this request, if there is one (it is then used up)."""
    for injection in injections:
        if injection.method == request.method and injection.path == request.url.path:
            injections.remove(injection)
            if injection.delay:
                await asyncio.sleep(injection.delay)
            return Response(
                injection.body,
                status_code=injection.status,
                headers=injection.headers,
                media_type=injection.content_type,
            )
    return None
