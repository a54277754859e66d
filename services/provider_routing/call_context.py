"""Which generation and request a provider call is made for. Set by the runner around its
provider calls; read by whoever records something about a call (the API call log, the error
event of a failed call), so those rows name their generation without being passed it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_generation: ContextVar[uuid.UUID | None] = ContextVar("kiln_call_generation", default=None)
current_request: ContextVar[str | None] = ContextVar("kiln_call_request", default=None)


@contextmanager
def calls_for(generation_id: uuid.UUID, request_id: str | None) -> Iterator[None]:
    """Provider calls made meanwhile belong to this generation and request."""
    generation_token = current_generation.set(generation_id)
    request_token = current_request.set(request_id)
    try:
        yield
    finally:
        current_generation.reset(generation_token)
        current_request.reset(request_token)
