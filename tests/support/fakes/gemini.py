"""A fake Gemini API (generativelanguage.googleapis.com/v1beta) speaking its wire format.

Route: POST /v1beta/models/{model}:generateContent. It checks the `x-goog-api-key` header
like Google (a wrong key is 400 INVALID_ARGUMENT with reason API_KEY_INVALID), refuses
`candidateCount` > 1 for image models ("Multiple candidates is not enabled"), and answers
image models with a text part and an `inlineData {mimeType, data}` part holding a real PNG
whose shape follows `imageConfig.aspectRatio` (or `inline_data {mime_type}` when
`snake_case` is set), and text models with `candidateCount` candidates.

Tests script failures with `fake.next(...)`: each queued answer is used by one request, in
order. Every request is recorded (path, query, headers, JSON body).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.fakes.scripted import ScriptedFake, played, png

API_KEY = "AIzaSy-test-0123456789abcdefghijklmnopqrs"
RATIO_SIZES = {
    "1:1": (64, 64),
    "2:3": (64, 96),
    "3:2": (96, 64),
    "3:4": (48, 64),
    "4:3": (64, 48),
    "4:5": (64, 80),
    "5:4": (80, 64),
    "9:16": (36, 64),
    "16:9": (64, 36),
    "21:9": (84, 36),
}


def google_error(status: int, code: str, message: str, details: list[Any] | None = None) -> Any:
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if details is not None:
        error["details"] = details
    return {"error": error}


class FakeGemini(ScriptedFake):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(api_key)
        self.snake_case = False
        self.app = Starlette(
            routes=[
                Route(
                    "/v1beta/models/{call:path}",
                    self._generate,
                    methods=["POST"],
                )
            ]
        )

    def reset(self) -> None:
        super().reset()
        self.snake_case = False

    async def _generate(self, request: Request) -> Response:
        recorded = await self._record(request)
        scripted = self._take_scripted()
        model, _, method = str(request.path_params["call"]).partition(":")
        if method != "generateContent":
            return _json(404, google_error(404, "NOT_FOUND", "Method not found."))
        if recorded.headers.get("x-goog-api-key") != self.api_key:
            return _json(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "API key not valid. Please pass a valid API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                            "locale": "en-US",
                            "message": "API key not valid. Please pass a valid API key.",
                        },
                    ],
                ),
            )
        if scripted is not None:
            return await played(scripted)
        payload = recorded.json or {}
        contents = payload.get("contents") or []
        if not contents:
            return _json(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "* GenerateContentRequest.contents: contents is not specified",
                ),
            )
        config = payload.get("generationConfig") or {}
        count = int(config.get("candidateCount", 1))
        if "image" in model:
            if count > 1:
                return _json(
                    400,
                    google_error(
                        400,
                        "INVALID_ARGUMENT",
                        f"Multiple candidates is not enabled for models/{model}",
                    ),
                )
            return _json(200, self._image_answer(model, config))
        prompt = contents[0]["parts"][0]["text"]
        return _json(200, self._text_answer(model, prompt, count))

    def _image_answer(self, model: str, config: dict[str, Any]) -> Any:
        ratio = (config.get("imageConfig") or {}).get("aspectRatio", "1:1")
        width, height = RATIO_SIZES.get(ratio, (64, 64))
        data = base64.b64encode(png(width, height, (10, 150, 90))).decode()
        if self.snake_case:
            image_part: dict[str, Any] = {"inline_data": {"mime_type": "image/png", "data": data}}
        else:
            image_part = {"inlineData": {"mimeType": "image/png", "data": data}}
        return {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": "Here is your picture."}, image_part],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 1290},
            "modelVersion": model,
            "responseId": "resp-1",
        }

    def _text_answer(self, model: str, prompt: str, count: int) -> Any:
        return {
            "candidates": [
                {
                    "content": {"parts": [{"text": f"{prompt} #{index}"}], "role": "model"},
                    "finishReason": "STOP",
                    "index": index,
                }
                for index in range(count)
            ],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7},
            "modelVersion": model,
        }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, "application/json")
