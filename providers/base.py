"""What every provider adapter speaks.

A call starts with `start()`. Providers that answer within the request (OpenAI-compatible,
Gemini, the built-in local one) return `Finished`; providers that queue work (Replicate, fal,
Stability) return `Pending` with their job id, and Kiln then calls `poll()` later from a
delayed message, or receives the result through `parse_webhook()`, so no worker thread waits
minutes. Outputs come back as bytes or as (expiring) URLs; Kiln downloads URLs into its own
store before a generation completes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    # Image-to-image: the input image, already fetched safely and stored by Kiln.
    input_image: bytes | None = None
    input_image_type: str | None = None
    strength: float | None = None
    # Where an asynchronous provider should POST its result (None: poll only).
    webhook_url: str | None = None
    # The image sizes ("WxH", or "auto") the route's model accepts, from the catalogue; None:
    # what the adapter knows of the model (an OpenAI-compatible server's: any size).
    sizes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProviderOutput:
    """One output: `data` (bytes) or `url` (to download before the provider deletes it)."""

    content_type: str | None = None
    data: bytes | None = None
    url: str | None = None
    width: int | None = None
    height: int | None = None
    text: str | None = None


@dataclass(frozen=True)
class Finished:
    outputs: list[ProviderOutput]


@dataclass(frozen=True)
class Pending:
    """Accepted but not done: ask again after `poll_after` seconds (or wait for the webhook)."""

    job_id: str
    progress: float | None = None  # 0..1 when the provider says
    stage: str | None = None  # e.g. "in queue (position 3)", "processing"
    poll_after: float = 2.0


Result = Finished | Pending


# The code of a refusal under a provider's content policy: never failed over (every provider
# would be asked the same), and the generation fails with it (FailureCode.CONTENT_REJECTED).
CONTENT_REJECTED = "CONTENT_REJECTED"


class ProviderError(Exception):
    """A provider call failed. `code` is safe to show users; `retryable` says whether the same
    call may succeed if tried again (408/409/429/5xx, timeouts, connection errors), and
    `retry_after` is the provider's own hint in seconds.

    Codes: PROVIDER_TIMEOUT, PROVIDER_RATE_LIMITED, PROVIDER_UNAVAILABLE (5xx, connection),
    PROVIDER_BAD_RESPONSE (malformed body), PROVIDER_REJECTED (other 4xx),
    PROVIDER_AUTH (401/403), CONTENT_REJECTED (content policy: never failed over),
    PROVIDER_ERROR (the provider reported the job failed), OUTPUT_UNAVAILABLE."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = True,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass(frozen=True)
class WebhookUpdate:
    """What a verified provider webhook says about one of its jobs."""

    job_id: str
    result: Result | ProviderError


class Provider(Protocol):
    name: str

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        """Begin the work. Raise ProviderError on failure."""
        ...

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        """The state of a job that `start` left Pending."""
        ...

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        """Best effort: stop a Pending job (the user cancelled, or it timed out)."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        """Verify and read a webhook. Raise ProviderError(code="WEBHOOK_REJECTED") when the
        signature or body is wrong."""
        ...


class Synchronous:
    """The rest of the Provider interface for an adapter whose `start` always answers with
    the outputs (Finished): it leaves no jobs to poll or cancel and gets no webhooks. `label`
    names the provider in the errors a misrouted poll or webhook gets."""

    label: str

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        raise ProviderError(
            "PROVIDER_ERROR",
            f"The {self.label} answers synchronously; it has no jobs to poll.",
            retryable=False,
        )

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        raise ProviderError(
            "WEBHOOK_REJECTED", f"The {self.label} sends no webhooks.", retryable=False
        )


@runtime_checkable
class SignedWebhooks(Protocol):
    """The hook of a provider whose webhooks are signed with keys it fetches and caches
    (fal's JWKS): Kiln's webhook route calls `refresh_keys()` before `parse_webhook()`, and
    the provider fetches only when its cached keys are stale. A protocol of its own beside
    `Provider`, checked with isinstance, so adapters without signed-key webhooks need not
    declare it."""

    async def refresh_keys(self, *, force: bool = False) -> None:
        """Make sure the webhook keys are loaded and fresh (no request when they are)."""
        ...
