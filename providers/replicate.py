"""Replicate: asynchronous predictions over its HTTP API, polled or completed by a signed
webhook.

Wire format (https://replicate.com/docs, checked against the current reference):
- Create: `POST /v1/predictions` with `{"version": <version id>, "input": {...}}` for a pinned
  community model (route model `owner/name:version`, or a bare version id), or
  `POST /v1/models/{owner}/{name}/predictions` with `{"input": {...}}` for an official model
  (route model `owner/name`). `webhook` + `webhook_events_filter: ["completed"]` when Kiln gives
  a webhook URL. The blocking `Prefer: wait` header is never sent: a worker must not wait.
- Read: `GET /v1/predictions/{id}`. Status is one of starting, processing, succeeded, failed,
  canceled, aborted. `output` is a URL, a list of URLs, or (text models) strings.
- Cancel: `POST /v1/predictions/{id}/cancel`.
- Webhooks follow Standard Webhooks: headers `webhook-id`, `webhook-timestamp`,
  `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` entries over
  `{id}.{timestamp}.{raw body}`), keyed by the base64 part of the `whsec_...` signing secret
  (`GET /v1/webhooks/default/secret`). The body is the prediction object.

What is dropped: deployments (`/v1/deployments/...`), streaming, file uploads through the
Files API (the input image goes inline as a data URL), and the per-prediction `deadline`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

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
from providers.content import bad_response, decode_data_url
from providers.http import ProviderHTTP, error_for_status, json_body

DEFAULT_BASE_URL = "https://api.replicate.com/v1"
POLL_AFTER = 2.0
# cancel() is not given a request, so it has no route timeout to honour.
CANCEL_TIMEOUT = 30.0
WEBHOOK_TOLERANCE_SECONDS = 5 * 60
MAX_MESSAGE = 200

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PERCENT = re.compile(r"(\d{1,3})%")
# How Replicate and its models word a safety-checker refusal: "NSFW content detected",
# "The input or output was flagged as sensitive ... (E005)", "flagged by the safety system".
_CONTENT_SAFETY = re.compile(
    r"\bnsfw\b|flagged as sensitive|\bE005\b|safety (?:checker|filter|system)|content policy"
    r"|content moderation",
    re.IGNORECASE,
)
_CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "txt": "text/plain",
    "json": "application/json",
    "glb": "model/gltf-binary",
}


class ReplicateProvider:
    name = "replicate"

    def __init__(
        self,
        http: ProviderHTTP,
        api_token: str,
        base_url: str = DEFAULT_BASE_URL,
        webhook_secret: str | None = None,
    ) -> None:
        self.http = http
        self._token = api_token
        self.base_url = base_url.rstrip("/")
        self._webhook_key = _webhook_key(webhook_secret) if webhook_secret else None

    # -- the adapter interface -------------------------------------------------------------

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        url, body = self._create_call(request)
        response = await self.http.request(
            "POST",
            url,
            timeout=request.timeout,
            model=request.model,
            json=body,
            headers=self._headers(),
            check=self._check,
        )
        return self._result(_prediction(response))

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        response = await self.http.request(
            "GET",
            f"{self.base_url}/predictions/{_job_path(job_id)}",
            timeout=request.timeout,
            model=request.model,
            headers=self._headers(),
            check=self._check,
        )
        return self._result(_prediction(response))

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        await self.http.request(
            "POST",
            f"{self.base_url}/predictions/{_job_path(job_id)}/cancel",
            timeout=CANCEL_TIMEOUT,
            headers=self._headers(),
            check=self._check,
        )

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        if self._webhook_key is None:
            raise _rejected("Replicate webhooks are not configured.")
        self._verify(headers, body)
        try:
            prediction = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise _rejected("The webhook body is not JSON.") from error
        if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
            raise _rejected("The webhook body is not a prediction.")
        try:
            result: Result | ProviderError = self._result(prediction)
        except ProviderError as error:
            result = error
        return WebhookUpdate(job_id=prediction["id"], result=result)

    # -- requests --------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}

    def _create_call(self, request: ProviderRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"input": _input(request)}
        model = request.model.strip()
        owner_name, _, version = model.partition(":")
        if version or _VERSION_ID.match(model):
            body["version"] = version or model
            if version and not (_VERSION_ID.match(version) and _is_owner_name(owner_name)):
                raise _bad_route(model)
            url = f"{self.base_url}/predictions"
        elif _is_owner_name(model):
            owner, name = model.split("/")
            url = f"{self.base_url}/models/{owner}/{name}/predictions"
        else:
            raise _bad_route(model)
        if request.webhook_url:
            body["webhook"] = request.webhook_url
            body["webhook_events_filter"] = ["completed"]
        return url, body

    def _check(self, response: httpx.Response) -> ProviderError | None:
        """The generic status mapping, with the token scrubbed from any echoed body text."""
        if response.status_code < 400:
            return None
        error = error_for_status(response)
        if self._token and self._token in error.message:
            error.message = error.message.replace(self._token, "[redacted]")
            error.args = (error.message,)
        return error

    # -- reading predictions ---------------------------------------------------------------

    def _result(self, prediction: dict[str, Any]) -> Result:
        job_id = prediction.get("id")
        if not isinstance(job_id, str) or not job_id:
            raise bad_response("The prediction has no id.")
        status = prediction.get("status")
        if status in ("starting", "processing"):
            return Pending(
                job_id=job_id,
                progress=_progress(prediction.get("logs")),
                stage=status,
                poll_after=POLL_AFTER,
            )
        if status == "succeeded":
            return Finished(_outputs(prediction.get("output")))
        if status == "failed":
            raise self._failure(prediction.get("error"))
        if status == "canceled":
            raise ProviderError("PROVIDER_ERROR", "canceled", retryable=False)
        if status == "aborted":
            # The prediction's deadline passed before it started: nothing ran.
            raise ProviderError("PROVIDER_ERROR", "aborted", retryable=False)
        raise bad_response("The prediction has an unknown status.")

    def _failure(self, error: Any) -> ProviderError:
        text = error if isinstance(error, str) else ""
        if not text and error is not None:
            text = orjson.dumps(error).decode()
        if _CONTENT_SAFETY.search(text):
            return ProviderError(
                CONTENT_REJECTED,
                "The provider's safety filter rejected the prompt or the result.",
                retryable=False,
            )
        first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if self._token:
            first_line = first_line.replace(self._token, "[redacted]")
        detail = f": {first_line[:MAX_MESSAGE]}" if first_line else "."
        return ProviderError("PROVIDER_ERROR", f"The model failed{detail}", retryable=False)

    # -- webhooks --------------------------------------------------------------------------

    def _verify(self, headers: Mapping[str, str], body: bytes) -> None:
        lowered = {key.lower(): value for key, value in headers.items()}
        message_id = lowered.get("webhook-id")
        timestamp = lowered.get("webhook-timestamp")
        signatures = lowered.get("webhook-signature")
        if not message_id or not timestamp or not signatures:
            raise _rejected("The webhook is missing its signature headers.")
        try:
            sent_at = int(timestamp)
        except ValueError as error:
            raise _rejected("The webhook timestamp is not a number.") from error
        if abs(time.time() - sent_at) > WEBHOOK_TOLERANCE_SECONDS:
            raise _rejected("The webhook timestamp is too old or too new.")
        assert self._webhook_key is not None
        signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
        expected = base64.b64encode(
            hmac.new(self._webhook_key, signed, hashlib.sha256).digest()
        ).decode()
        for entry in signatures.split():
            version, _, signature = entry.partition(",")
            if version == "v1" and hmac.compare_digest(signature, expected):
                return
        raise _rejected("The webhook signature does not match.")


# -- helpers ---------------------------------------------------------------------------------


def _input(request: ProviderRequest) -> dict[str, Any]:
    values: dict[str, Any] = {"prompt": request.prompt}
    if request.negative_prompt:
        values["negative_prompt"] = request.negative_prompt
    if request.width is not None:
        values["width"] = request.width
    if request.height is not None:
        values["height"] = request.height
    if request.seed is not None:
        values["seed"] = request.seed
    if request.num_outputs != 1:
        values["num_outputs"] = request.num_outputs
    if request.input_image is not None:
        kind = request.input_image_type or "application/octet-stream"
        encoded = base64.b64encode(request.input_image).decode()
        values["image"] = f"data:{kind};base64,{encoded}"
        if request.strength is not None:
            values["prompt_strength"] = request.strength
    values.update(request.params)
    return values


def _is_owner_name(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(_NAME_PART.match(part) for part in parts)


def _job_path(job_id: str) -> str:
    return quote(job_id, safe="")


def _prediction(response: httpx.Response) -> dict[str, Any]:
    body = json_body(response)
    if not isinstance(body, dict):
        raise bad_response("The provider sent something other than a prediction.")
    return body


def _progress(logs: Any) -> float | None:
    if not isinstance(logs, str):
        return None
    found = _PERCENT.findall(logs)
    if not found:
        return None
    return min(100, int(found[-1])) / 100


def _outputs(output: Any) -> list[ProviderOutput]:
    items = output if isinstance(output, list) else [output]
    items = [item for item in items if item is not None]
    if not items:
        raise ProviderError(
            "OUTPUT_UNAVAILABLE", "The prediction succeeded without output.", retryable=False
        )
    if all(isinstance(item, str) and _is_url(item) for item in items):
        return [_file_output(item) for item in items]
    if all(isinstance(item, str) for item in items):
        # A language model's output is a list of tokens.
        text = "".join(items)
        return [ProviderOutput(content_type="text/plain", data=text.encode(), text=text)]
    raise bad_response("The prediction's output is not files or text.")


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://", "data:"))


def _file_output(value: str) -> ProviderOutput:
    if value.startswith("data:"):
        data, kind = decode_data_url(value)
        return ProviderOutput(content_type=kind, data=data)
    path = urlsplit(value).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return ProviderOutput(content_type=_CONTENT_TYPES.get(extension), url=value)


def _webhook_key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise ValueError("The Replicate webhook secret is not whsec_<base64>.") from error


def _rejected(message: str) -> ProviderError:
    return ProviderError("WEBHOOK_REJECTED", message, retryable=False)


def _bad_route(model: str) -> ProviderError:
    return ProviderError(
        "PROVIDER_REJECTED",
        f"Replicate route model {model[:100]!r} is not owner/name or owner/name:version.",
        retryable=False,
    )
