"""A fake OpenAI-compatible image provider for the end-to-end tests, served from the test
process on a real port so the stack's worker processes call it over HTTP. It counts calls
and calls in flight, and each model name picks a behaviour:

- "good-model": answers a real PNG (b64_json) after `delay` seconds;
- "broken-model": always 500;
- "flaky-model": 503 while `down` is set, a PNG otherwise;
- "side-fails-model": refuses (400) prompts for a side view, draws the rest."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fake_server import serve

API_KEY = "sk-e2e-fake"


class FakeProvider:
    def __init__(self) -> None:
        self.delay = 0.05
        self.down = False
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.url = ""

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.max_in_flight = 0

    async def generate(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        model = body.get("model", "")
        with self._lock:
            self.calls[model] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if model == "broken-model" or (model == "flaky-model" and self.down):
                return JSONResponse({"error": {"message": "upstream down"}}, status_code=503)
            if model == "side-fails-model" and body.get("prompt", "").startswith("Side view"):
                return JSONResponse({"error": {"message": "cannot draw sides"}}, status_code=400)
            await asyncio.sleep(self.delay)
            width, height = (int(v) for v in body.get("size", "64x64").split("x"))
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), "purple").save(buffer, "PNG")
            images = [
                {"b64_json": base64.b64encode(buffer.getvalue()).decode()}
                for _ in range(int(body.get("n", 1)))
            ]
            return JSONResponse({"created": 0, "data": images})
        finally:
            with self._lock:
                self.in_flight -= 1


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    app = Starlette(routes=[Route("/v1/images/generations", fake.generate, methods=["POST"])])
    with serve(app) as url:
        fake.url = f"{url}/v1"
        yield fake
