"""What the Replicate and Stability fakes share: every request recorded, and scripted
answers for the next matching request (`inject`): a status, a body, headers, a delay, used
once, before the fake's normal handling (and its auth check)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @classmethod
    def of(cls, request: Request, body: bytes) -> Self:
        headers = {key.lower(): value for key, value in request.headers.items()}
        return cls(request.method, request.url.path, headers, body)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


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


R = TypeVar("R", bound=Recorded)


class InjectableFake(Generic[R]):
    """`requests`, as the fake recorded them, and `injections`, with the asserts on one
    and the scripting of the other."""

    def __init__(self) -> None:
        self.base_url = ""  # where it listens, set by served()
        self.requests: list[R] = []
        self.injections: list[Injection] = []

    def reset(self) -> None:
        self.requests.clear()
        self.injections.clear()

    def inject(self, method: str, path: str, **answer: Any) -> None:
        """The next `method path` request gets this answer instead of the normal one."""
        self.injections.append(Injection(method, path, **answer))

    def calls(self, method: str, path: str | None = None) -> list[R]:
        return [r for r in self.requests if r.method == method and (path is None or r.path == path)]
