"""A fake OpenAI API speaking its documented wire format.

Routes: POST /v1/images/generations (JSON), POST /v1/images/edits (multipart), POST
/v1/chat/completions (JSON), GET /files/{name} (where `url` outputs point). It checks the
Bearer key like OpenAI (401 `invalid_api_key`, quoting the key it was given as a careless
compatible server would), refuses what OpenAI refuses (`response_format` for GPT image
models, n > 1 for dall-e-3, a `size` the model does not list), and answers with real PNGs
made by Pillow, base64-encoded in `data[].b64_json`, or as `data[].url`.

Tests script failures with `fake.next(...)`: each queued answer is used by one request, in
order. Every request is recorded (path, query, headers, JSON or multipart body).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.fakes.scripted import Recorded, Scripted, ScriptedFake, png

API_KEY = "sk-test-0123456789abcdefghijklmnopqrstuvwxyz"
# The sizes OpenAI's Images API reference lists per model (generations and edits alike); any
# other `size` is a 400. Models not listed here (a compatible server's) take any size.
ACCEPTED_SIZES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dall-e-2", ("256x256", "512x512", "1024x1024")),
    ("dall-e-3", ("1024x1024", "1792x1024", "1024x1792")),
    ("gpt-image", ("1024x1024", "1536x1024", "1024x1536", "auto")),
    ("chatgpt-image", ("1024x1024", "1536x1024", "1024x1536", "auto")),
)


def accepted_sizes(model: str) -> tuple[str, ...] | None:
    return next((sizes for prefix, sizes in ACCEPTED_SIZES if model.startswith(prefix)), None)


def error(status: int, message: str, type_: str, code: str | None = None) -> Scripted:
    return Scripted(
        status, {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


class FakeOpenAI(ScriptedFake):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(api_key)
        self.served_files: dict[str, bytes] = {}
        self._names = itertools.count(1)
        self.app = Starlette(
            routes=[
                Route("/v1/images/generations", self._generations, methods=["POST"]),
                Route("/v1/images/edits", self._edits, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/files/{name}", self._file, methods=["GET"]),
            ]
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _unauthorized(self, recorded: Recorded) -> Response | None:
        given = recorded.headers.get("authorization", "")
        if given == f"Bearer {self.api_key}":
            return None
        key = given.removeprefix("Bearer ")
        return _json(
            error(
                401,
                f"Incorrect API key provided: {key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        )

    def _images(self, model: str, n: int, size: str | None, response_format: str | None) -> Any:
        chosen = "1024x1024" if size in (None, "auto") else str(size)
        width, height = (int(v) for v in chosen.split("x"))
        data = []
        for index in range(n):
            image = png(width, height, (40 * index % 256, 120, 200))
            if response_format == "url" or (response_format is None and model.startswith("dall-e")):
                name = f"img-{next(self._names)}.png"
                self.served_files[name] = image
                data.append({"url": f"{self.base_url}/files/{name}", "revised_prompt": "x"})
            else:
                data.append({"b64_json": base64.b64encode(image).decode()})
        answer: dict[str, Any] = {"created": 1767225600, "data": data}
        if model.startswith("gpt-image"):
            answer.update(
                {
                    "background": "opaque",
                    "output_format": "png",
                    "quality": "medium",
                    "size": f"{width}x{height}",
                    "usage": {"input_tokens": 10, "output_tokens": 1056, "total_tokens": 1066},
                }
            )
        return answer

    def _invalid(
        self, model: str, n: int, response_format: str | None, size: str | None
    ) -> Response | None:
        accepted = accepted_sizes(model)
        if size is not None and accepted is not None and size not in accepted:
            listed = ", ".join(f"'{s}'" for s in accepted)
            return _json(
                error(
                    400,
                    f"Invalid value: '{size}'. Supported values are: {listed}.",
                    "invalid_request_error",
                    "invalid_value",
                )
            )
        if model.startswith("gpt-image") and response_format is not None:
            return _json(
                error(
                    400,
                    "Unknown parameter: 'response_format'.",
                    "invalid_request_error",
                    "unknown_parameter",
                )
            )
        if model.startswith("dall-e-3") and n > 1:
            return _json(
                error(
                    400,
                    "You must provide n=1 for this model.",
                    "invalid_request_error",
                    None,
                )
            )
        return None

    # -- routes -----------------------------------------------------------------------------

    async def _generations(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._unauthorized(recorded) or await self._scripted()
        if refused:
            return refused
        body = recorded.json or {}
        if not body.get("prompt") or not body.get("model"):
            return _json(error(400, "Missing prompt or model.", "invalid_request_error"))
        model, n = str(body["model"]), int(body.get("n", 1))
        fmt = body.get("response_format")
        invalid = self._invalid(model, n, fmt, body.get("size"))
        if invalid:
            return invalid
        return _json(Scripted(200, self._images(model, n, body.get("size"), fmt)))

    async def _edits(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._unauthorized(recorded) or await self._scripted()
        if refused:
            return refused
        fields = recorded.fields
        if "image" not in recorded.files or not fields.get("prompt"):
            return _json(error(400, "Missing image or prompt.", "invalid_request_error"))
        model, n = fields.get("model", "dall-e-2"), int(fields.get("n", "1"))
        fmt = fields.get("response_format")
        invalid = self._invalid(model, n, fmt, fields.get("size"))
        if invalid:
            return invalid
        return _json(Scripted(200, self._images(model, n, fields.get("size"), fmt)))

    async def _chat(self, request: Request) -> Response:
        recorded = await self._record(request)
        refused = self._unauthorized(recorded) or await self._scripted()
        if refused:
            return refused
        body = recorded.json or {}
        messages = body.get("messages") or []
        if not messages:
            return _json(error(400, "'messages' is required.", "invalid_request_error"))
        user = messages[-1]["content"]
        prompt = user if isinstance(user, str) else user[0]["text"]
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": f"{prompt} #{index}", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index in range(int(body.get("n", 1)))
        ]
        return _json(
            Scripted(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1767225600,
                    "model": body.get("model"),
                    "choices": choices,
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                },
            )
        )

    async def _file(self, request: Request) -> Response:
        data = self.served_files.get(request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")


def _json(answer: Scripted) -> Response:
    return Response(orjson.dumps(answer.json), answer.status, answer.headers, "application/json")
