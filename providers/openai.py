"""OpenAI and OpenAI-compatible servers (AIML API, Ollama, vLLM, LocalAI, ...).

Every call answers within the request, so `start()` returns `Finished`.

IMAGE (and MULTI_VIEW, drawn like IMAGE as the local provider does):
  POST {base}/images/generations  JSON {model, prompt, n, size "WxH", response_format, ...}
  POST {base}/images/edits        multipart {image, prompt, model, n, size, ...} when the
                                  request has an input image (image-to-image)
  Answers carry `data[]` items with `b64_json` (decoded to bytes) or `url` (returned as a URL
  for Kiln to download: OpenAI's URLs expire after 60 minutes).
TEXT:
  POST {base}/chat/completions    {model, messages [system?, user], n, seed?}; one text/plain
                                  output per `choices[].message.content`.
VIDEO is not offered: PROVIDER_REJECTED, not retryable.

What the API cannot take, and is dropped: `negative_prompt` (no such field), `strength` (the
edits endpoint has no strength), `seed` for images (the Images API has no seed; chat takes it).

Sizes: `width`/`height` become `size` only when both are set; route `params.size` overrides
them. Models accept only listed sizes (any other is a 400): the request's `sizes` (the
route's, from the catalogue), else KNOWN_SIZES for OpenAI's own models (from its Images API
reference), pick the nearest listed size (aspect ratio first, then area; providers/sizes.py).
A model with neither (an OpenAI-compatible server's) gets the size as asked.

Route params that pass through: images `quality`, `style`, `background`, `output_format`,
`output_compression`, `moderation`, `user` (edits: `input_fidelity` instead of `style` and
`moderation`); chat `temperature`, `top_p`, `max_tokens`, `max_completion_tokens`,
`presence_penalty`, `frequency_penalty`, `stop`, `reasoning_effort`, `user`; `system` becomes
the chat's system message. `response_format` overrides the default below; `n_per_call` caps
`n` in one call (default 1 for dall-e-3, which only accepts n=1).

`response_format`: the GPT image models (gpt-image-*, chatgpt-image-*) always answer base64
and refuse the parameter, so it is left out for them; every other model is asked for
`b64_json`, which dall-e-2/3 and the compatible servers understand. `url` items are accepted
either way.

A server may give back fewer images or choices than `n` (Ollama ignores `n`); the adapter then
asks again for the rest, at most one call per output, so a request yields `num_outputs`
outputs or fails.

Errors: content-policy refusals (`error.code` content_policy_violation / moderation_blocked /
content_filter, a "safety system" message, or a chat choice finished by content_filter or
carrying a refusal) are CONTENT_REJECTED and never retried. `error.type`
image_generation_user_error alone is not a content refusal: OpenAI also uses it for input
mistakes such as a bad mask. A 429 with code insufficient_quota is a billing problem that
waiting will not fix: PROVIDER_REJECTED, not retryable. The API key is sent only in the
Authorization header and is scrubbed from every error message (401 answers quote it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
from providers.sizes import nearest_size

T = TypeVar("T")

CONTENT_POLICY_CODES = frozenset(
    {"content_policy_violation", "moderation_blocked", "content_filter"}
)
IMAGE_PARAMS = (
    "quality",
    "style",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "user",
)
EDIT_PARAMS = (
    "quality",
    "background",
    "output_format",
    "output_compression",
    "input_fidelity",
    "user",
)
CHAT_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "reasoning_effort",
    "user",
)
GPT_IMAGE_PREFIXES = ("gpt-image", "chatgpt-image")
# The sizes OpenAI's image models accept (generations and edits), by model name prefix.
GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
KNOWN_SIZES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dall-e-2", ("256x256", "512x512", "1024x1024")),
    ("dall-e-3", ("1024x1024", "1792x1024", "1024x1792")),
    *((prefix, GPT_IMAGE_SIZES) for prefix in GPT_IMAGE_PREFIXES),
)
FORMAT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


class OpenAIProvider(Synchronous):
    label = "OpenAI-compatible provider"
    name = "openai"

    def __init__(
        self,
        http: ProviderHTTP,
        api_key: str,
        base_url: str = "https://api.openai.com/v1",
        organization: str | None = None,
    ) -> None:
        self.http = http
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.organization = organization

    # -- the Provider interface -------------------------------------------------------------

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        if request.kind == GenerationKind.VIDEO:
            raise ProviderError(
                "PROVIDER_REJECTED",
                "The OpenAI-compatible provider does not make videos.",
                retryable=False,
            )
        wanted = max(1, request.num_outputs)
        if request.kind == GenerationKind.TEXT:
            call = self._chat
            per_call = wanted
        else:
            call = self._edit if request.input_image is not None else self._generate
            per_call = _per_call_limit(request, wanted)
        outputs: list[ProviderOutput] = []
        await progress(0.0, "generating")
        for attempt in range(wanted):  # at most one call per output
            if len(outputs) >= wanted:
                break
            if attempt:
                await progress(len(outputs) / wanted, "generating")
            outputs.extend(await call(request, min(per_call, wanted - len(outputs)), attempt))
        await progress(1.0, "done")
        return Finished(outputs[:wanted])

    # -- calls ------------------------------------------------------------------------------

    async def _generate(
        self, request: ProviderRequest, n: int, attempt: int
    ) -> list[ProviderOutput]:
        body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": n}
        size = _size(request)
        if size:
            body["size"] = size
        response_format = _response_format(request)
        if response_format:
            body["response_format"] = response_format
        body.update(_passthrough(request.params, IMAGE_PARAMS))
        return await self._call(
            request,
            "/images/generations",
            lambda answer: _image_outputs(answer, request),
            json=body,
        )

    async def _edit(self, request: ProviderRequest, n: int, attempt: int) -> list[ProviderOutput]:
        fields: dict[str, str] = {"model": request.model, "prompt": request.prompt, "n": str(n)}
        size = _size(request)
        if size:
            fields["size"] = size
        response_format = _response_format(request)
        if response_format:
            fields["response_format"] = response_format
        for name, value in _passthrough(request.params, EDIT_PARAMS).items():
            fields[name] = value if isinstance(value, str) else orjson.dumps(value).decode()
        image = request.input_image or b""
        content_type = request.input_image_type or sniff(image) or "image/png"
        extension = content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
        # ProviderHTTP sends `json` or raw `content`, not `files`: let httpx encode the
        # multipart body, then send its bytes with its Content-Type (and boundary).
        encoded = httpx.Request(
            "POST",
            self.base_url,
            data=fields,
            files={"image": (f"image.{extension}", image, content_type)},
        )
        return await self._call(
            request,
            "/images/edits",
            lambda answer: _image_outputs(answer, request),
            content=encoded.read(),
            headers={"Content-Type": encoded.headers["Content-Type"]},
        )

    async def _chat(self, request: ProviderRequest, n: int, attempt: int) -> list[ProviderOutput]:
        messages: list[dict[str, Any]] = []
        system = request.params.get("system")
        if system:
            messages.append({"role": "system", "content": str(system)})
        if request.input_image is not None:
            image_type = request.input_image_type or sniff(request.input_image) or "image/png"
            data_url = f"data:{image_type};base64,{base64.b64encode(request.input_image).decode()}"
            user: Any = [
                {"type": "text", "text": request.prompt},
                {"type": "image_url", "image_url": {"url": data_url}},
            ]
        else:
            user = request.prompt
        messages.append({"role": "user", "content": user})
        body: dict[str, Any] = {"model": request.model, "messages": messages, "n": n}
        if request.seed is not None:
            # A top-up call with the same seed would repeat the first answer.
            body["seed"] = request.seed + attempt
        body.update(_passthrough(request.params, CHAT_PARAMS))
        return await self._call(request, "/chat/completions", _text_outputs, json=body)

    async def _call(
        self,
        request: ProviderRequest,
        path: str,
        parse: Callable[[Any], T],
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> T:
        all_headers = {"Authorization": f"Bearer {self.api_key}"}
        if self.organization:
            all_headers["OpenAI-Organization"] = self.organization
        all_headers.update(headers or {})
        return await call_json(
            self.http,
            "POST",
            self.base_url + path,
            parse,
            timeout=request.timeout,
            model=request.model,
            json=json,
            content=content,
            headers=all_headers,
            error=self._error,
        )

    def _error(self, response: httpx.Response) -> ProviderError:
        """An HTTP error in OpenAI's shape `{"error": {"message", "type", "param", "code"}}`
        (compatible servers may send less, or plain text)."""
        status = response.status_code
        error = _error_object(response)
        code = str(error.get("code") or "")
        message = str(error.get("message") or "") if error else response.text
        message = redact(message, self.api_key)[:MAX_ERROR_TEXT]
        if 400 <= status < 500 and (
            code in CONTENT_POLICY_CODES or "safety system" in message.lower()
        ):
            return ProviderError(
                CONTENT_REJECTED,
                f"The provider's content policy refused this request: {message}",
                retryable=False,
                status_code=status,
            )
        if status in (401, 403):
            # No body text: OpenAI's 401 quotes (part of) the key it was given.
            return credentials_refused(status, code or status)
        if status == 429 and code == "insufficient_quota":
            return ProviderError(
                "PROVIDER_REJECTED",
                "The provider account has run out of quota.",
                retryable=False,
                status_code=status,
            )
        return worded_error(response, message)


# -- requests ---------------------------------------------------------------------------------


def _size(request: ProviderRequest) -> str | None:
    if request.params.get("size"):
        return str(request.params["size"])
    if not (request.width and request.height):
        return None
    asked = f"{request.width}x{request.height}"
    accepted = request.sizes if request.sizes is not None else _known_sizes(request.model)
    if not accepted or asked in accepted:
        return asked
    nearest = nearest_size(request.width, request.height, accepted)
    if nearest is None:  # only "auto": the model picks
        return "auto" if "auto" in accepted else asked
    return nearest


def _known_sizes(model: str) -> tuple[str, ...] | None:
    return next((sizes for prefix, sizes in KNOWN_SIZES if model.startswith(prefix)), None)


def _response_format(request: ProviderRequest) -> str | None:
    if "response_format" in request.params:
        value = request.params["response_format"]
        return str(value) if value else None
    if request.model.startswith(GPT_IMAGE_PREFIXES):
        return None
    return "b64_json"


def _per_call_limit(request: ProviderRequest, wanted: int) -> int:
    if request.params.get("n_per_call"):
        return max(1, int(request.params["n_per_call"]))
    if request.model.startswith("dall-e-3"):
        return 1
    return wanted


def _passthrough(params: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: params[name] for name in names if params.get(name) is not None}


# -- answers ----------------------------------------------------------------------------------


def _image_outputs(answer: Any, request: ProviderRequest) -> list[ProviderOutput]:
    items = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider's answer had no image list.")
    declared = FORMAT_TYPES.get(str(answer.get("output_format") or "").lower())
    outputs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("b64_json"):
            data = decode_base64(item["b64_json"])
            content_type = sniff(data) or declared
            width, height = image_size(data)
            outputs.append(ProviderOutput(content_type, data=data, width=width, height=height))
        elif item.get("url"):
            outputs.append(ProviderOutput(declared, url=str(item["url"])))
    if not outputs:
        raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider's answer held no images.")
    return outputs


def _text_outputs(answer: Any) -> list[ProviderOutput]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider's answer had no choices.")
    outputs = []
    refused = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or {}
        if choice.get("finish_reason") == "content_filter" or message.get("refusal"):
            refused = True
            continue
        text = _content_text(message.get("content"))
        if text:
            outputs.append(ProviderOutput("text/plain", data=text.encode(), text=text))
    if not outputs and refused:
        raise ProviderError(
            CONTENT_REJECTED,
            "The provider's content policy refused this request.",
            retryable=False,
        )
    if not outputs:
        raise ProviderError("PROVIDER_BAD_RESPONSE", "The provider's answer held no text.")
    return outputs


def _content_text(content: Any) -> str:
    """`content` is a string; some compatible servers send a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in (None, "text", "output_text")
        )
    return ""


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):  # some compatible servers: {"error": "text"}
            return {"message": error}
        if isinstance(body.get("detail"), str):  # FastAPI-based servers
            return {"message": body["detail"]}
    return {}
