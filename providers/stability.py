"""Stability AI's v2beta REST API: synchronous Stable Image endpoints and asynchronous
generations that are submitted, then polled.

Wire format (https://platform.stability.ai/docs/api-reference, checked against the current
reference):
- Every call is `Authorization: Bearer <key>`; every submission is `multipart/form-data`
  (also when no file is attached).
- Synchronous (`stable-image/generate/core|ultra|sd3`, `stable-image/upscale/fast|conservative`,
  the edit and control endpoints): 200 with the image bytes when `Accept: image/*`, or JSON
  `{"image": <base64>, "finish_reason", "seed"}` when `Accept: application/json`; with
  `image/*` the finish reason and seed come as `finish-reason` / `seed` response headers.
- Asynchronous (`image-to-video`, `stable-image/upscale/creative`,
  `stable-image/edit/replace-background-and-relight`): 200 `{"id": <64 hex>}`; then
  `GET /v2beta/results/{id}` (image-to-video: its own `GET /v2beta/image-to-video/result/{id}`)
  answers 202 `{"id", "status": "in-progress"}` until done, then 200 with the bytes
  (`Accept: video/*` or `image/*`) or JSON with base64 `video` / `image`. Results are kept
  24 hours.
- Content moderation: 403 `{"name": "content_moderation", "errors": [...]}` on submission, or
  `finish_reason` `CONTENT_FILTERED` on a result -> CONTENT_REJECTED.

What is dropped or approximated:
- v2beta takes an `aspect_ratio`, not a pixel size: width/height pick the nearest supported
  ratio (text-to-image only), and the provider decides the resolution.
- One image per request: `num_outputs` > 1 makes that many synchronous calls (seed, seed+1,
  ...); an asynchronous endpoint accepts only one output per job.
- Stability has no webhooks (`parse_webhook` always rejects) and no cancel endpoint:
  `cancel()` does nothing, the job runs to its end and its result expires unread.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
from PIL import Image

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
from providers.content import bad_response
from providers.http import ProviderHTTP, error_for_status, json_body
from providers.sizes import nearest_ratio

DEFAULT_BASE_URL = "https://api.stability.ai"
MAX_SEED = 4294967294
POLL_AFTER_IMAGE = 5.0
POLL_AFTER_VIDEO = 10.0  # the reference's own advice for video results

ALIASES = {
    "core": "stable-image/generate/core",
    "ultra": "stable-image/generate/ultra",
    "sd3": "stable-image/generate/sd3",
}
# Asynchronous endpoints and where their results are read.
ASYNC_RESULTS = {
    "image-to-video": "image-to-video/result/{id}",
    "stable-image/upscale/creative": "results/{id}",
    "stable-image/edit/replace-background-and-relight": "results/{id}",
}
GENERIC_RESULTS = "results/{id}"
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
# Route params that steer the adapter rather than go to Stability.
ADAPTER_PARAMS = frozenset({"accept"})

_ENDPOINT = re.compile(r"^[a-z0-9][a-z0-9-]*(?:/[a-z0-9][a-z0-9.-]*)*$")
_SD3_MODEL = re.compile(r"^sd3(?:\.\d+)?(?:-[a-z0-9-]+)?$")


class StabilityProvider:
    name = "stability"

    def __init__(self, http: ProviderHTTP, api_key: str, base_url: str = DEFAULT_BASE_URL) -> None:
        self.http = http
        self._key = api_key
        self.base_url = base_url.rstrip("/")

    # -- the adapter interface -------------------------------------------------------------

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        endpoint, model_field = _endpoint(request.model)
        is_async = endpoint in ASYNC_RESULTS
        if is_async and request.num_outputs != 1:
            raise _refused(f"Stability's {endpoint} makes one output per job.")
        if endpoint == "image-to-video" and request.input_image is None:
            raise _refused("Stability's image-to-video needs an input image.")
        outputs: list[ProviderOutput] = []
        for index in range(request.num_outputs):
            await progress(index / request.num_outputs, "generating")
            result = await self._submit(request, endpoint, model_field, index)
            if isinstance(result, Pending):
                if outputs:  # a synchronous endpoint turned asynchronous half-way
                    raise bad_response("Stability queued one of several images.")
                return result
            outputs.extend(result.outputs)
        await progress(1.0, "done")
        return Finished(outputs)

    async def poll(self, request: ProviderRequest, job_id: str) -> Result:
        endpoint, _ = _endpoint(request.model)
        path = ASYNC_RESULTS.get(endpoint, GENERIC_RESULTS).format(id=quote(job_id, safe=""))
        response = await self.http.request(
            "GET",
            f"{self.base_url}/v2beta/{path}",
            timeout=request.timeout,
            model=request.model,
            headers=self._headers(_accept(request)),
            check=self._check,
        )
        if response.status_code == 202:
            return Pending(job_id=job_id, stage="in progress", poll_after=_poll_after(request))
        result = self._read(response, request)
        if isinstance(result, Pending):
            raise bad_response("Stability answered a finished result without content.")
        return result

    async def cancel(self, request: ProviderRequest, job_id: str) -> None:
        """Stability has no way to stop a generation: nothing to do. The job runs to its end
        (and is billed by Stability); its result expires unread after 24 hours."""
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookUpdate:
        raise ProviderError("WEBHOOK_REJECTED", "Stability sends no webhooks.", retryable=False)

    # -- submitting ------------------------------------------------------------------------

    async def _submit(
        self, request: ProviderRequest, endpoint: str, model_field: str | None, index: int
    ) -> Result:
        url = f"{self.base_url}/v2beta/{endpoint}"
        body = httpx.Request("POST", url, files=_form(request, endpoint, model_field, index))
        content = body.read()
        headers = self._headers(_accept(request) if endpoint not in ASYNC_RESULTS else None)
        headers["Content-Type"] = body.headers["Content-Type"]
        response = await self.http.request(
            "POST",
            url,
            timeout=request.timeout,
            model=request.model,
            content=content,
            headers=headers,
            check=self._check,
        )
        return self._read(response, request)

    def _headers(self, accept: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key}"}
        headers["Accept"] = accept or "application/json"
        return headers

    def _check(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            reason = response.headers.get("finish-reason", "")
            return _moderated() if reason.upper() == "CONTENT_FILTERED" else None
        if status == 403 and _error_name(response) == "content_moderation":
            return _moderated(status)
        error = error_for_status(response)
        if self._key and self._key in error.message:
            error.message = error.message.replace(self._key, "[redacted]")
            error.args = (error.message,)
        return error

    # -- reading answers -------------------------------------------------------------------

    def _read(self, response: httpx.Response, request: ProviderRequest) -> Result:
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type == "application/json":
            return self._read_json(response, request)
        if not response.content:
            raise bad_response("Stability answered without content.")
        if not media_type.startswith(("image/", "video/")):
            raise bad_response("Stability answered something that is not an image or video.")
        return Finished([_output(response.content, media_type)])

    def _read_json(self, response: httpx.Response, request: ProviderRequest) -> Result:
        body = json_body(response)
        if not isinstance(body, dict):
            raise bad_response("Stability answered JSON that is not an object.")
        if str(body.get("finish_reason", "")).upper() == "CONTENT_FILTERED":
            raise _moderated()
        for field, default_type in (("video", "video/mp4"), ("image", _image_type(request))):
            encoded = body.get(field)
            if isinstance(encoded, str) and encoded:
                try:
                    data = base64.b64decode(encoded, validate=True)
                except binascii.Error as error:
                    raise bad_response("Stability's base64 content is broken.") from error
                return Finished([_output(data, default_type)])
        job_id = body.get("id")
        if isinstance(job_id, str) and job_id:
            return Pending(job_id=job_id, stage="queued", poll_after=_poll_after(request))
        raise bad_response("Stability answered JSON without an id, image or video.")


# -- helpers ---------------------------------------------------------------------------------


def _endpoint(model: str) -> tuple[str, str | None]:
    """The v2beta endpoint a route model names, and the `model` form field it implies."""
    name = model.strip().strip("/").removeprefix("v2beta/")
    if name in ALIASES:
        return ALIASES[name], None
    if _SD3_MODEL.match(name):
        return ALIASES["sd3"], name
    if not _ENDPOINT.match(name):
        raise _refused(f"Stability route model {model[:100]!r} names no v2beta endpoint.")
    return name, None


def _form(
    request: ProviderRequest, endpoint: str, model_field: str | None, index: int
) -> list[tuple[str, tuple[str | None, str | bytes] | tuple[str, bytes, str]]]:
    fields: dict[str, Any] = {}
    if endpoint != "image-to-video":  # the one endpoint that takes no prompt
        fields["prompt"] = request.prompt
        if request.negative_prompt:
            fields["negative_prompt"] = request.negative_prompt
    if model_field:
        fields["model"] = model_field
    if request.seed is not None:
        fields["seed"] = (request.seed + index) % (MAX_SEED + 1)
    if request.input_image is not None:
        if endpoint == "stable-image/generate/sd3":
            fields["mode"] = "image-to-image"
        if request.strength is not None:
            fields["strength"] = request.strength
    elif request.width and request.height and endpoint.startswith("stable-image/generate/"):
        fields["aspect_ratio"] = nearest_ratio(request.width, request.height, ASPECT_RATIOS)
    fields.update({k: v for k, v in request.params.items() if k not in ADAPTER_PARAMS})
    form: list[tuple[str, tuple[str | None, str | bytes] | tuple[str, bytes, str]]] = [
        (key, (None, _form_value(value))) for key, value in fields.items() if value is not None
    ]
    if request.input_image is not None:
        kind = request.input_image_type or "image/png"
        extension = kind.split("/")[-1].split("+")[0] or "png"
        form.append(("image", (f"image.{extension}", request.input_image, kind)))
    return form


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _accept(request: ProviderRequest) -> str:
    accept = request.params.get("accept")
    if isinstance(accept, str) and accept:
        return accept
    return "video/*" if request.kind == GenerationKind.VIDEO else "image/*"


def _poll_after(request: ProviderRequest) -> float:
    return POLL_AFTER_VIDEO if request.kind == GenerationKind.VIDEO else POLL_AFTER_IMAGE


def _image_type(request: ProviderRequest) -> str:
    output_format = str(request.params.get("output_format", "png")).lower()
    return "image/jpeg" if output_format in ("jpg", "jpeg") else f"image/{output_format}"


def _output(data: bytes, content_type: str) -> ProviderOutput:
    width = height = None
    if content_type.startswith("image/"):
        try:
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                width, height = image.size
        except (OSError, ValueError):
            pass
    return ProviderOutput(content_type=content_type, data=data, width=width, height=height)


def _error_name(response: httpx.Response) -> str | None:
    try:
        body = json_body(response)
    except ProviderError:
        return None
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _moderated(status: int | None = None) -> ProviderError:
    return ProviderError(
        CONTENT_REJECTED,
        "Stability's content moderation rejected the prompt or the result.",
        retryable=False,
        status_code=status,
    )


def _refused(message: str) -> ProviderError:
    return ProviderError("PROVIDER_REJECTED", message, retryable=False)
