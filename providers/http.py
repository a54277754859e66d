"""The one way adapters talk HTTP: maps failures to ProviderError (retryable or not, with the
provider's own wait: its Retry-After header, else what a 429's body says) and reports every
call, without secrets, to a call sink (Kiln's API call log)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson

from providers.base import ProviderError

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
MAX_ERROR_TEXT = 300
# A 429 that says its wait in words instead of a Retry-After header (Replicate does): Django
# REST framework's "Request was throttled. Expected available in 12 seconds." and Replicate's
# documented "Your rate limit resets in ~30s.". Only the start of the body is read.
_THROTTLE_WAIT = re.compile(
    r"available in (\d+(?:\.\d+)?) seconds?\b|resets in ~?(\d+(?:\.\d+)?) ?s(?:econds?)?\b",
    re.IGNORECASE,
)
THROTTLE_BODY_CHARS = 2000


@dataclass(frozen=True)
class CallRecord:
    provider: str
    model: str | None
    method: str
    url: str  # scheme, host and path only: query strings may carry keys
    status_code: int | None
    duration_ms: int
    ok: bool
    error: str | None


CallSink = Callable[[CallRecord], Awaitable[None]]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def throttle_wait(response: httpx.Response) -> float | None:
    """How long a 429 asks us to wait: its Retry-After header, else the wait its body states
    in words (see _THROTTLE_WAIT); None when it says neither."""
    header = parse_retry_after(response.headers.get("retry-after"))
    if header is not None:
        return header
    found = _THROTTLE_WAIT.search(response.text[:THROTTLE_BODY_CHARS])
    if found is None:
        return None
    return float(found.group(1) or found.group(2))


def error_for_status(response: httpx.Response) -> ProviderError:
    status = response.status_code
    detail = response.text[:MAX_ERROR_TEXT]
    if status == 429:
        return ProviderError(
            "PROVIDER_RATE_LIMITED",
            "The provider is rate limiting us.",
            status_code=status,
            retry_after=throttle_wait(response),
        )
    if status in RETRYABLE_STATUS or status >= 500:
        return ProviderError(
            "PROVIDER_UNAVAILABLE",
            f"The provider answered {status}.",
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status in (401, 403):
        return ProviderError(
            "PROVIDER_AUTH",
            f"The provider refused our credentials: {detail}",
            retryable=False,
            status_code=status,
        )
    return ProviderError(
        "PROVIDER_REJECTED",
        f"The provider refused the request: {detail}",
        retryable=False,
        status_code=status,
    )


def credentials_refused(status: int, reason: object) -> ProviderError:
    """A 401/403 named by the provider's code or status, never by its text: some quote (part
    of) the key they were given."""
    return ProviderError(
        "PROVIDER_AUTH",
        f"The provider refused our credentials ({reason}).",
        retryable=False,
        status_code=status,
    )


def worded_error(
    response: httpx.Response, message: str, retry_after: float | None = None
) -> ProviderError:
    """error_for_status's verdict on the response, in the words of the provider's own error
    message (read from its error shape, already redacted) when it gave one. `retry_after`:
    the wait the provider's body asks for, used when a retryable answer's headers name none."""
    generic = error_for_status(response)
    return ProviderError(
        generic.code,
        f"The provider answered {response.status_code}: {message}" if message else generic.message,
        retryable=generic.retryable,
        status_code=response.status_code,
        retry_after=generic.retry_after
        if generic.retry_after is not None or not generic.retryable
        else retry_after,
    )


class ProviderHTTP:
    def __init__(
        self, provider: str, client: httpx.AsyncClient, sink: CallSink | None = None
    ) -> None:
        self.provider = provider
        self.client = client
        self.sink = sink

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        model: str | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        check: Callable[[httpx.Response], ProviderError | None] | None = None,
    ) -> httpx.Response:
        """Send one request. `check` lets an adapter recognise its provider's own failures
        (a content-policy refusal, say) before the generic status mapping."""
        started = time.monotonic()
        status: int | None = None
        error: ProviderError | None = None
        try:
            response = await self.client.request(
                method, url, json=json, content=content, headers=headers, timeout=timeout
            )
            status = response.status_code
            error = check(response) if check else None
            if error is None and status >= 400:
                error = error_for_status(response)
        except httpx.TimeoutException:
            error = ProviderError("PROVIDER_TIMEOUT", "The provider did not answer in time.")
        except httpx.TransportError as failure:
            error = ProviderError(
                "PROVIDER_UNAVAILABLE", f"Could not reach the provider ({type(failure).__name__})."
            )
        await self._record(method, url, model, status, started, error)
        if error is not None:
            raise error
        return response

    async def _record(
        self,
        method: str,
        url: str,
        model: str | None,
        status: int | None,
        started: float,
        error: ProviderError | None,
    ) -> None:
        if self.sink is None:
            return
        parsed = httpx.URL(url)
        await self.sink(
            CallRecord(
                provider=self.provider,
                model=model,
                method=method,
                url=f"{parsed.scheme}://{parsed.host}{parsed.path}",
                status_code=status,
                duration_ms=int((time.monotonic() - started) * 1000),
                ok=error is None,
                error=f"{error.code}: {error.message}"[:MAX_ERROR_TEXT] if error else None,
            )
        )


async def call_json(
    http: ProviderHTTP,
    method: str,
    url: str,
    parse: Callable[[Any], T],
    *,
    timeout: float,
    model: str | None = None,
    json: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    error: Callable[[httpx.Response], ProviderError] = error_for_status,
) -> T:
    """A call whose JSON answer `parse` reads. Reading happens inside the call, so a 200
    that is malformed, of an unexpected shape or a refusal is logged as the failed call it
    is. `error` maps an HTTP error in the provider's own shape."""
    parsed: list[T] = []

    def check(response: httpx.Response) -> ProviderError | None:
        if response.status_code >= 400:
            return error(response)
        try:
            parsed.append(parse(json_body(response)))
        except ProviderError as failure:
            failure.status_code = failure.status_code or response.status_code
            return failure
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            return ProviderError(
                "PROVIDER_BAD_RESPONSE",
                "The provider's answer had an unexpected shape.",
                status_code=response.status_code,
            )
        return None

    await http.request(
        method,
        url,
        timeout=timeout,
        model=model,
        json=json,
        content=content,
        headers=headers,
        check=check,
    )
    return parsed[0]


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or PROVIDER_BAD_RESPONSE (retryable: a proxy's HTML error page
    today may be a good answer tomorrow)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as error:
        raise ProviderError(
            "PROVIDER_BAD_RESPONSE",
            "The provider sent a malformed answer.",
            status_code=response.status_code,
        ) from error
