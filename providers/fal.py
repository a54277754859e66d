"""fal.ai, through its queue API (https://queue.fal.run).

Wire format (fal docs, "Queue API" / "Inference API" / "Webhooks"):
- Submit: POST {base}/{model_id} with the model's input JSON and `Authorization: Key <key>`;
  `?fal_webhook=<url>` asks fal to POST the result to us when done. The answer carries
  `request_id` (and status/response/cancel URLs, `queue_position`).
- Status, result and cancel use only the app root of the model id (owner/app, plus the
  `workflows/` or `comfy/` namespace when there is one), never the endpoint sub-path:
  `fal-ai/flux/dev` -> `{base}/fal-ai/flux/requests/{id}/status` (GET, `?logs=1` adds runner
  logs; IN_QUEUE with `queue_position` -> IN_PROGRESS -> COMPLETED), `{base}/fal-ai/flux/
  requests/{id}` (GET, the model's output, or the model's own error status and body) and
  `{base}/fal-ai/flux/requests/{id}/cancel` (PUT). We build these URLs ourselves from our
  configured base rather than following URLs from a response, so the key is only ever sent
  to the host we were configured with.
- Webhooks are signed with ED25519: the message is
  `request_id \\n user_id \\n timestamp \\n sha256_hex(raw body)` from the headers
  X-Fal-Webhook-Request-Id / -User-Id / -Timestamp, the signature is hex in
  X-Fal-Webhook-Signature, the public keys come from fal's JWKS (OKP / Ed25519, `x`
  base64url), which may be cached for up to 24 hours; timestamps more than 5 minutes off are
  refused.

The job id is fal's `request_id`: the same id arrives in webhooks. `poll()` gets the request
(so the model) with it; `cancel()` gets the job id alone, so the adapter remembers, in this
process, which app each request it started or polled belongs to (see `cancel`).

ED25519 verification needs the `cryptography` package (imported only when a webhook is
verified): without it every webhook is refused with WEBHOOK_REJECTED.

The webhook route must call `await provider.refresh_keys()` before `parse_webhook()` whenever
`provider.keys_stale` is true (no keys yet, or older than 24 hours): `parse_webhook` is
synchronous and only uses the cached keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from models.generation import GenerationKind
from providers.base import (
    CONTENT_REJECTED,
    Finished,
    Pending,
    ProgressCallback,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
    WebhookUpdate,
)
from providers.content import decode_data_url
from providers.http import MAX_ERROR_TEXT, ProviderHTTP, error_for_status, json_body

DEFAULT_BASE_URL = "https://queue.fal.run"
DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
# Namespaced endpoint ids keep their namespace in the app root (fal's clients do the same).
NAMESPACES = frozenset({"workflows", "comfy"})
WEBHOOK_LEEWAY = 300.0  # seconds a webhook timestamp may be off
JWKS_MAX_AGE = 24 * 3600.0  # fal: cache the JWKS for up to 24 hours
JWKS_TIMEOUT = 10.0
POLL_AFTER = 2.0
POLL_AFTER_WITH_WEBHOOK = 15.0  # a fallback only: the webhook should come first
# Infrastructure failures fal reports after its own retries (docs: "Request Error Types"):
# another attempt, or another provider, may well succeed.
INFRA_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)
CONTENT_POLICY = "content_policy_violation"
TOO_LATE = "CANCEL_TOO_LATE"

_SEGMENT = re.compile(r"^[A-Za-z0-9_~][A-Za-z0-9._~-]*$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_STEPS = re.compile(r"\b(\d+)\s*/\s*(\d+)\b")

HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"


class FalProvider:
    name = "fal"

    def __init__(
        self,
        http: ProviderHTTP,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        jwks_url: str = DEFAULT_JWKS_URL,
        jwks: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        cancel_timeout: float = 30.0,
    ) -> None:
        self.http = http
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.jwks_url = jwks_url
        self.cancel_timeout = cancel_timeout
        self._keys: list[bytes] = []
        self._keys_fetched: float | None = None  # time.monotonic() of the last fetch
        self._static_keys = jwks is not None
        if jwks is not None:
            self._keys = _public_keys(jwks)

    def __repr__(self) -> str:  # never show the key
        return f"FalProvider(base_url={self.base_url!r})"

    # -- the queue -------------------------------------------------------------------------

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        model = _model_path(request.model)
        url = f"{self.base_url}/{model}"
        if request.webhook_url:
            url += "?" + urlencode({"fal_webhook": request.webhook_url})
        response = await self.http.request(
            "POST",
            url,
            timeout=request.timeout,
            model=request.model,
            json=_input(request),
            headers=self._headers(),
            check=self._check,
        )
        body = _object(json_body(response))
        request_id = _request_id(body.get("request_id"))
        position = _int(body.get("queue_position"))
        stage = _queue_stage(position)
        await progress(0.0, stage)
        return Pending(job_id=request_id, stage=stage, poll_after=self._poll_after(request))

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        request_id = _request_id(job_id)
        root = _app_root(request.model)
        base = f"{self.base_url}/{root}/requests/{request_id}"
        response = await self.http.request(
            "GET",
            f"{base}/status?logs=1",
            timeout=request.timeout,
            model=request.model,
            headers=self._headers(),
            check=self._check,
        )
        status = _object(json_body(response))
        state = status.get("status")
        if state == "IN_QUEUE":
            return Pending(
                job_id=request_id,
                stage=_queue_stage(_int(status.get("queue_position"))),
                poll_after=self._poll_after(request),
            )
        if state == "IN_PROGRESS":
            return Pending(
                job_id=request_id,
                progress=_log_progress(status.get("logs")),
                stage="processing",
                poll_after=self._poll_after(request),
            )
        if state != "COMPLETED":
            raise ProviderError(
                "PROVIDER_BAD_RESPONSE",
                f"fal answered with an unknown request status {str(state)[:40]!r}.",
                status_code=response.status_code,
            )
        if status.get("error"):
            raise _job_error(status.get("error"), status.get("error_type"))
        result = await self.http.request(
            "GET",
            base,
            timeout=request.timeout,
            model=request.model,
            headers=self._headers(),
            check=self._check,
        )
        return Finished(_outputs(request.kind, _object(json_body(result))))

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        await self._cancel(_app_root(request.model), _request_id(job_id), request.model)

    async def _cancel(self, root: str, request_id: str, model: str | None) -> None:
        def check(response: httpx.Response) -> ProviderError | None:
            # ALREADY_COMPLETED (400) or NOT_FOUND: nothing left to stop. ProviderHTTP has no
            # way to call a 4xx fine, so this comes back as an error we then swallow (and the
            # call log says CANCEL_TOO_LATE rather than a refusal).
            if response.status_code in (400, 404) and _status_field(response) in (
                "ALREADY_COMPLETED",
                "NOT_FOUND",
            ):
                return ProviderError(
                    TOO_LATE,
                    "The fal request had already finished.",
                    retryable=False,
                    status_code=response.status_code,
                )
            return self._check(response)

        try:
            await self.http.request(
                "PUT",
                f"{self.base_url}/{root}/requests/{request_id}/cancel",
                timeout=self.cancel_timeout,
                model=model,
                headers=self._headers(),
                check=check,
            )
        except ProviderError as error:
            if error.code != TOO_LATE:
                raise

    # -- webhooks --------------------------------------------------------------------------

    @property
    def keys_stale(self) -> bool:
        """True when the webhook route should `await refresh_keys()` first."""
        if self._static_keys:
            return not self._keys
        if not self._keys or self._keys_fetched is None:
            return True
        return time.monotonic() - self._keys_fetched > JWKS_MAX_AGE

    async def refresh_keys(self, *, force: bool = False) -> None:
        """Fetch fal's webhook public keys (JWKS) unless the cached ones are fresh."""
        if not force and not self.keys_stale:
            return
        response = await self.http.request("GET", self.jwks_url, timeout=JWKS_TIMEOUT)
        keys = _public_keys(json_body(response))
        if not keys:
            raise ProviderError(
                "PROVIDER_BAD_RESPONSE",
                "fal's key set has no ED25519 keys.",
                status_code=response.status_code,
            )
        self._keys = keys
        self._keys_fetched = time.monotonic()

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        lowered = {key.lower(): value for key, value in headers.items()}
        values = [
            lowered.get(name, "").strip()
            for name in (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
        ]
        request_id, user_id, timestamp, signature_hex = values
        if not all(values):
            raise _rejected("A fal webhook signature header is missing.")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise _rejected("The fal webhook timestamp is not a number.") from None
        if abs(time.time() - sent_at) > WEBHOOK_LEEWAY:
            raise _rejected("The fal webhook timestamp is too far from now.")
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            raise _rejected("The fal webhook signature is not hex.") from None
        if not self._keys:
            raise _rejected("fal's webhook keys are not loaded (call refresh_keys first).")
        message = "\n".join(
            (request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())
        ).encode()
        if not _verify(self._keys, signature, message):
            raise _rejected("The fal webhook signature does not match.")

        try:
            payload = _object(orjson.loads(body))
        except (orjson.JSONDecodeError, ProviderError):
            raise _rejected("The fal webhook body is not a JSON object.") from None
        job_id = payload.get("request_id")
        if job_id != request_id or not isinstance(job_id, str) or not _REQUEST_ID.match(job_id):
            raise _rejected("The fal webhook request id does not match its signed header.")
        state = payload.get("status")
        if state == "OK":
            result = payload.get("payload")
            if result is None:
                # fal could not serialise the output into the webhook (`payload_error`): it is
                # still in the queue's result store, so fetch it by polling.
                return WebhookUpdate(job_id, Pending(job_id=job_id, poll_after=0.0))
            try:
                return WebhookUpdate(job_id, Finished(_outputs(None, _object(result))))
            except ProviderError as error:
                return WebhookUpdate(job_id, error)
        if state == "ERROR":
            detail = payload.get("payload")
            return WebhookUpdate(job_id, _job_error(payload.get("error"), None, detail))
        raise _rejected("The fal webhook status is neither OK nor ERROR.")

    # -- helpers ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._api_key}", "Accept": "application/json"}

    def _poll_after(self, request: ProviderRequest) -> float:
        return POLL_AFTER_WITH_WEBHOOK if request.webhook_url else POLL_AFTER

    def _check(self, response: httpx.Response) -> ProviderError | None:
        """fal's own failures first (content policy, X-Fal-Retryable), then the generic
        mapping; the key is scrubbed from any text a provider echoed back."""
        if response.status_code < 400:
            return None
        if _names_content_policy(_safe_json(response)):
            return ProviderError(
                CONTENT_REJECTED,
                "fal refused the request under its content policy.",
                retryable=False,
                status_code=response.status_code,
            )
        error = error_for_status(response)
        if error.retryable and response.headers.get("x-fal-retryable", "").lower() == "false":
            error.retryable = False
        message = self._scrub(error.message)
        if message != error.message:
            error = ProviderError(
                error.code,
                message,
                retryable=error.retryable,
                status_code=error.status_code,
                retry_after=error.retry_after,
            )
        return error

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "[key]") if self._api_key else text


# -- request and response shapes ---------------------------------------------------------


def _input(request: ProviderRequest) -> dict[str, Any]:
    """The model's input: the route's params, then the request's own fields on top."""
    data: dict[str, Any] = dict(request.params)
    data["prompt"] = request.prompt
    if request.negative_prompt:
        data["negative_prompt"] = request.negative_prompt
    if request.seed is not None:
        data["seed"] = request.seed
    if request.kind == GenerationKind.IMAGE:
        if request.width and request.height:
            data["image_size"] = {"width": request.width, "height": request.height}
        data["num_images"] = request.num_outputs
    if request.input_image is not None:
        content_type = request.input_image_type or "image/png"
        encoded = base64.b64encode(request.input_image).decode("ascii")
        data["image_url"] = f"data:{content_type};base64,{encoded}"
        if request.strength is not None:
            data["strength"] = request.strength
    return data


def _outputs(kind: GenerationKind | None, body: dict[str, Any]) -> list[ProviderOutput]:
    """A fal result (`images`, `image`, `video` or text `output`) as outputs; images fal's
    safety checker flagged are dropped, and all flagged is CONTENT_REJECTED."""
    if body.get("error"):
        raise _job_error(body.get("error"), body.get("error_type"), body.get("detail"))
    files: list[Any] = []
    images = body.get("images")
    if isinstance(images, list):
        flags = body.get("has_nsfw_concepts")
        if isinstance(flags, list) and len(flags) == len(images):
            if images and all(flag is True for flag in flags):
                raise ProviderError(
                    CONTENT_REJECTED,
                    "fal's safety checker flagged every image.",
                    retryable=False,
                )
            images = [image for image, flag in zip(images, flags, strict=True) if flag is not True]
        files.extend(images)
    for single in ("image", "video"):
        if isinstance(body.get(single), dict):
            files.append(body[single])
    outputs = [_file_output(item) for item in files]
    text = body.get("output")
    if isinstance(text, str) and (kind in (None, GenerationKind.TEXT) or not outputs):
        outputs.append(ProviderOutput("text/plain", data=text.encode(), text=text))
    if not outputs:
        raise ProviderError("PROVIDER_BAD_RESPONSE", "fal's result has no outputs.")
    return outputs


def _file_output(item: Any) -> ProviderOutput:
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "fal's result has an output without a URL.")
    url: str = item["url"]
    content_type = item.get("content_type") if isinstance(item.get("content_type"), str) else None
    width, height = _int(item.get("width")), _int(item.get("height"))
    if url.startswith("data:"):
        # sync_mode: the file itself, inline.
        data, inline_type = decode_data_url(url)
        return ProviderOutput(content_type or inline_type, data=data, width=width, height=height)
    if not url.startswith(("https://", "http://")):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "fal sent an output URL we cannot fetch.")
    return ProviderOutput(content_type, url=url, width=width, height=height)


def _job_error(error: Any, error_type: Any, detail: Any = None) -> ProviderError:
    """fal finished the request with a failure (after its own retries)."""
    if (
        error_type == CONTENT_POLICY
        or _names_content_policy(detail)
        or _names_content_policy(error)
    ):
        return ProviderError(
            CONTENT_REJECTED, "fal refused the request under its content policy.", retryable=False
        )
    text = error if isinstance(error, str) else orjson.dumps(error).decode()
    message = f"fal reported the request failed: {text}"[:MAX_ERROR_TEXT]
    if isinstance(error_type, str) and error_type in INFRA_ERROR_TYPES:
        return ProviderError("PROVIDER_UNAVAILABLE", message)
    return ProviderError("PROVIDER_ERROR", message, retryable=False)


def _names_content_policy(value: Any) -> bool:
    """Whether a fal error body (`detail` list of typed errors, or an error object) names a
    content policy violation."""
    if isinstance(value, dict):
        if value.get("type") == CONTENT_POLICY or value.get("error_type") == CONTENT_POLICY:
            return True
        return _names_content_policy(value.get("detail"))
    if isinstance(value, list):
        return any(_names_content_policy(item) for item in value)
    return False


def _log_progress(logs: Any) -> float | None:
    """The latest progress a runner logged ("45%", or tqdm's "12/28"), as 0..1."""
    if not isinstance(logs, list):
        return None
    for entry in reversed(logs):
        message = entry.get("message") if isinstance(entry, dict) else None
        if not isinstance(message, str):
            continue
        percent = _PERCENT.search(message)
        if percent:
            return min(1.0, max(0.0, float(percent.group(1)) / 100))
        steps = _STEPS.search(message)
        if steps and int(steps.group(2)) > 0:
            return min(1.0, max(0.0, int(steps.group(1)) / int(steps.group(2))))
    return None


def _queue_stage(position: int | None) -> str:
    return "in queue" if position is None else f"in queue (position {position})"


# -- ids and paths ----------------------------------------------------------------------


def _model_path(model: str) -> str:
    parts = model.strip("/").split("/")
    if len(parts) < 2 or not all(_SEGMENT.match(part) and part != ".." for part in parts):
        raise ProviderError(
            "PROVIDER_REJECTED",
            "The fal model id must look like owner/app[/path].",
            retryable=False,
        )
    return "/".join(parts)


def _app_root(model: str) -> str:
    """fal's documented rule: status, result and cancel use only owner/app (with its
    namespace, if any), not the endpoint sub-path."""
    parts = _model_path(model).split("/")
    if parts[0] in NAMESPACES and len(parts) >= 3:
        return "/".join(parts[:3])
    return "/".join(parts[:2])


def _request_id(value: Any) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.match(value):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "fal sent no usable request id.")
    return value


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "fal sent an unexpected answer.")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _safe_json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _status_field(response: httpx.Response) -> Any:
    body = _safe_json(response)
    return body.get("status") if isinstance(body, dict) else None


# -- ED25519 ----------------------------------------------------------------------------


def _public_keys(jwks: Any) -> list[bytes]:
    """Raw 32-byte ED25519 public keys from a JWKS ({"keys": [...]}) or a list of JWKs."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else jwks
    keys: list[bytes] = []
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            keys.append(raw)
    return keys


def _verify(keys: list[bytes], signature: bytes, message: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise _rejected(
            "ED25519 verification needs the 'cryptography' package, which is not installed."
        ) from None
    if len(signature) != 64:
        return False
    for raw in keys:
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


def _rejected(message: str) -> ProviderError:
    return ProviderError("WEBHOOK_REJECTED", message, retryable=False)
