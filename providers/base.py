"""What every provider adapter speaks: a request in, outputs (bytes, never URLs) out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from models.generation import GenerationKind

# Called with (fraction of this call done 0..1, short stage text).
ProgressCallback = Callable[[float, str], Awaitable[None]]


@dataclass(frozen=True)
class ProviderRequest:
    kind: GenerationKind
    model: str  # the provider's own model id, from the route
    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    num_outputs: int = 1
    params: dict[str, Any] = field(default_factory=dict)  # the route's params
    timeout: float = 60.0


@dataclass(frozen=True)
class ProviderOutput:
    data: bytes
    content_type: str
    width: int | None = None
    height: int | None = None
    text: str | None = None


class ProviderError(Exception):
    """A provider call failed. `code` is safe to show users (e.g. PROVIDER_TIMEOUT,
    CONTENT_REJECTED); `retryable` says whether another try or route may succeed."""

    def __init__(self, code: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class Provider(Protocol):
    name: str

    async def generate(
        self, request: ProviderRequest, progress: ProgressCallback
    ) -> list[ProviderOutput]: ...
