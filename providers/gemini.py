"""Google's Gemini API (generativelanguage.googleapis.com), native `generateContent`.

POST {base}/models/{model}:generateContent, the key in the `x-goog-api-key` header (never in
`?key=`: URLs end up in logs), body:
  {"contents": [{"role": "user", "parts": [{"text": prompt},
                                           {"inline_data": {"mime_type", "data"}}?]}],
   "generationConfig": {...}, "systemInstruction"?: {...}, "safetySettings"?: [...]}
Answers come back as `candidates[].content.parts[]` with `text` or `inlineData {mimeType, data}`
(camelCase; snake_case `inline_data {mime_type}` is accepted too). Parts marked `thought: true`
(the thinking images of gemini-3-pro-image) are skipped. Every call answers within the request:
`start()` returns `Finished`.

IMAGE (and MULTI_VIEW): generationConfig.responseModalities ["TEXT", "IMAGE"]; an input image
(image-to-image) goes in as an inline_data part after the prompt. Gemini's image models refuse
`candidateCount` > 1 ("Multiple candidates is not enabled"), so `num_outputs` images are made
by that many concurrent calls, each keeping the first image it returns; with a seed, call i
uses seed + i so the images differ.
TEXT: one call with generationConfig.candidateCount = num_outputs (text models support it); if
fewer candidates come back, the rest are asked for again, at most one call per output.
VIDEO is not offered here (Veo is a separate long-running API): PROVIDER_REJECTED.

What the API cannot take, and is dropped: `negative_prompt` (no such field), `strength`
(no such field), exact `width`/`height`: Gemini takes an aspect ratio, so they become the
nearest of 1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9 in
generationConfig.imageConfig.aspectRatio. Route params: `aspect_ratio` and `image_size`
("1K"/"2K"/"4K", gemini-3 image models) set imageConfig directly; `temperature`, `top_p`,
`top_k`, `max_output_tokens` go to generationConfig; `system` becomes systemInstruction;
`safety_settings` pass through as safetySettings.

Errors: a prompt blocked by `promptFeedback.blockReason`, or candidates stopped for a safety
reason (SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII, RECITATION, IMAGE_SAFETY,
IMAGE_PROHIBITED_CONTENT, IMAGE_RECITATION, ...) with nothing usable left, are CONTENT_REJECTED
and never retried. An answer with no usable part (NO_IMAGE, IMAGE_OTHER, text only, ...) is
PROVIDER_BAD_RESPONSE. Gemini answers a bad key with 400 INVALID_ARGUMENT and the reason
API_KEY_INVALID: that is PROVIDER_AUTH. A 429 without Retry-After takes its delay from the
google.rpc.RetryInfo `retryDelay` ("27s") in the error details.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from models.generation import GenerationKind
from providers.base import (
    CONTENT_REJECTED,
    Finished,
    ProgressCallback,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
    Synchronous,
)
from providers.content import decode_base64, image_size, redact, sniff
from providers.http import (
    MAX_ERROR_TEXT,
    ProviderHTTP,
    call_json,
    credentials_refused,
    worded_error,
)
from providers.sizes import nearest_ratio

T = TypeVar("T")

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MODEL_ARMOR",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
GENERATION_PARAMS = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "max_output_tokens": "maxOutputTokens",
}


class GeminiProvider(Synchronous):
    label = "Gemini provider"
    name = "gemini"

    def __init__(
        self,
        http: ProviderHTTP,
        api_key: str,
        base_url: str = "https://generativelanguage.googleapis.com/v1beta",
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")

    # -- the Provider interface -------------------------------------------------------------

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        if request.kind == GenerationKind.VIDEO:
            raise ProviderError(
                "PROVIDER_REJECTED",
                "The Gemini provider does not make videos.",
                retryable=False,
            )
        wanted = max(1, request.num_outputs)
        await progress(0.0, "generating")
        if request.kind == GenerationKind.TEXT:
            outputs = await self._texts(request, wanted, progress)
        else:
            outputs = await self._images(request, wanted, progress)
        await progress(1.0, "done")
        return Finished(outputs)

    # -- calls ------------------------------------------------------------------------------

    async def _images(
        self, request: ProviderRequest, wanted: int, progress: ProgressCallback
    ) -> list[ProviderOutput]:
        done = 0

        async def one(index: int) -> ProviderOutput:
            nonlocal done
            config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
            image_config = _image_config(request)
            if image_config:
                config["imageConfig"] = image_config
            if request.seed is not None:
                config["seed"] = request.seed + index
            outputs = await self._call(
                request, self._body(request, config), lambda answer: _outputs(answer, image=True)
            )
            done += 1
            if done < wanted:
                await progress(done / wanted, "generating")
            return outputs[0]

        return await _all([one(index) for index in range(wanted)])

    async def _texts(
        self, request: ProviderRequest, wanted: int, progress: ProgressCallback
    ) -> list[ProviderOutput]:
        outputs: list[ProviderOutput] = []
        for attempt in range(wanted):  # at most one call per output
            if len(outputs) >= wanted:
                break
            if attempt:
                await progress(len(outputs) / wanted, "generating")
            config: dict[str, Any] = {}
            count = wanted - len(outputs)
            if count > 1:
                config["candidateCount"] = count
            if request.seed is not None:
                config["seed"] = request.seed + attempt
            outputs.extend(
                await self._call(
                    request,
                    self._body(request, config),
                    lambda answer: _outputs(answer, image=False),
                )
            )
        return outputs[:wanted]

    def _body(self, request: ProviderRequest, config: dict[str, Any]) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"text": request.prompt}]
        if request.input_image is not None:
            mime_type = request.input_image_type or sniff(request.input_image) or "image/png"
            parts.append(
                {
                    "inline_data": {
                        "mime_type": mime_type,
                        "data": base64.b64encode(request.input_image).decode(),
                    }
                }
            )
        params = request.params
        for name, field in GENERATION_PARAMS.items():
            if params.get(name) is not None:
                config[field] = params[name]
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
        if config:
            body["generationConfig"] = config
        if params.get("system"):
            body["systemInstruction"] = {"parts": [{"text": str(params["system"])}]}
        if params.get("safety_settings"):
            body["safetySettings"] = params["safety_settings"]
        return body

    async def _call(
        self, request: ProviderRequest, body: dict[str, Any], parse: Callable[[Any], T]
    ) -> T:
        model = request.model.removeprefix("models/")
        return await call_json(
            self.http,
            "POST",
            f"{self.base_url}/models/{quote(model, safe='.-_')}:generateContent",
            parse,
            timeout=request.timeout,
            model=request.model,
            json=body,
            headers={"x-goog-api-key": self.api_key},
            error=self._error,
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        """An HTTP error in Google's shape `{"error": {"code", "message", "status", "details"}}`."""
        status = response.status_code
        error = _error_object(response)
        message = str(error.get("message") or "") if error else response.text
        message = redact(message, self.api_key)[:MAX_ERROR_TEXT]
        details = [d for d in error.get("details") or [] if isinstance(d, dict)]
        reasons = {str(d.get("reason")) for d in details if d.get("reason")}
        if status in (401, 403) or "API_KEY_INVALID" in reasons:
            return credentials_refused(status, error.get("status") or status)
        return worded_error(response, message, _retry_delay(details))


async def _all(calls: list[Awaitable[T]]) -> list[T]:
    """Run the calls concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- requests ---------------------------------------------------------------------------------


def _image_config(request: ProviderRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if request.params.get("aspect_ratio"):
        config["aspectRatio"] = str(request.params["aspect_ratio"])
    elif request.width and request.height:
        config["aspectRatio"] = nearest_ratio(request.width, request.height, ASPECT_RATIOS)
    if request.params.get("image_size"):
        config["imageSize"] = str(request.params["image_size"])
    return config


# -- answers ----------------------------------------------------------------------------------


def _outputs(answer: Any, *, image: bool) -> list[ProviderOutput]:
    if not isinstance(answer, dict):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider's answer was not an object.")
    feedback = answer.get("promptFeedback") or {}
    block = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if block and block != "BLOCK_REASON_UNSPECIFIED":
        raise ProviderError(
            CONTENT_REJECTED,
            f"The provider blocked the prompt ({block}).",
            retryable=False,
        )
    outputs: list[ProviderOutput] = []
    blocked: list[str] = []
    others: list[str] = []
    for candidate in answer.get("candidates") or []:
        if not isinstance(candidate, dict):
            continue
        reason = str(candidate.get("finishReason") or "")
        if reason in BLOCKING_FINISH_REASONS:
            blocked.append(reason)
            continue
        found = _candidate_outputs(candidate, image=image)
        if not found and reason:
            others.append(reason)
        outputs.extend(found)
    if outputs:
        return outputs
    if blocked:
        raise ProviderError(
            CONTENT_REJECTED,
            f"The provider refused to generate this ({', '.join(sorted(set(blocked)))}).",
            retryable=False,
        )
    why = f" ({', '.join(sorted(set(others)))})" if others else ""
    wanted = "image" if image else "text"
    raise ProviderError("PROVIDER_BAD_RESPONSE", f"The provider's answer held no {wanted}{why}.")


def _candidate_outputs(candidate: dict[str, Any], *, image: bool) -> list[ProviderOutput]:
    content = candidate.get("content") or {}
    parts = [
        part
        for part in (content.get("parts") or [])
        if isinstance(part, dict) and not part.get("thought")
    ]
    if not image:
        text = "".join(str(part["text"]) for part in parts if part.get("text"))
        return [ProviderOutput("text/plain", data=text.encode(), text=text)] if text else []
    outputs = []
    for part in parts:
        inline = part.get("inlineData") or part.get("inline_data")
        if not isinstance(inline, dict) or not inline.get("data"):
            continue
        declared = inline.get("mimeType") or inline.get("mime_type")
        if declared and not str(declared).startswith("image/"):
            continue
        data = decode_base64(inline["data"])
        width, height = image_size(data)
        content_type = sniff(data) or (str(declared) if declared else None)
        outputs.append(ProviderOutput(content_type, data=data, width=width, height=height))
    return outputs


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """google.rpc.RetryInfo: {"@type": ".../google.rpc.RetryInfo", "retryDelay": "27.3s"}."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            try:
                return max(0.0, float(delay.removesuffix("s")))
            except ValueError:
                return None
    return None


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(body, list) and body:  # some Google front ends wrap the error in a list
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error: dict[str, Any] = body["error"]
        return error
    return {}
