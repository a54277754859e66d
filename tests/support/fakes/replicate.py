"""A fake Replicate HTTP API (v1) that speaks its wire format: predictions that move
starting -> processing -> succeeded over successive reads, official-model and version
endpoints, cancel, problem+json errors, and output files served as real PNGs.

Every request is recorded so tests can assert exactly what the adapter sent. Tests steer it
with `outcome` (how the next predictions end), `inject` (the next matching request gets a
scripted answer: a status, a body, a delay) and `throttle` (every request is refused for a
while, as Replicate documents it: a 429 whose body says how long to wait, no Retry-After)."""

from __future__ import annotations

import io
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fakes.injections import InjectableFake, Recorded, injected

TOKEN = "r8_fake_replicate_token"  # what FakeReplicate accepts unless told otherwise
SIGNING_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # Standard Webhooks' example key

NSFW_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
SENSITIVE_ERROR = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)


@dataclass
class Outcome:
    """How predictions created from now on end."""

    status: str = "succeeded"  # or "failed"
    error: str | None = None
    output_as_string: bool = False  # a single URL instead of a list of URLs
    polls: int = 2  # reads before the prediction reaches its end


class FakeReplicate(InjectableFake[Recorded]):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.predictions: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, int] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.outcome = Outcome()
        self.throttled_until = 0.0  # time.monotonic() until which every request gets a 429
        self.app = Starlette(
            routes=[
                Route("/v1/predictions", self.create_for_version, methods=["POST"]),
                Route(
                    "/v1/models/{owner}/{name}/predictions",
                    self.create_for_model,
                    methods=["POST"],
                ),
                Route("/v1/predictions/{id}", self.get_prediction, methods=["GET"]),
                Route("/v1/predictions/{id}/cancel", self.cancel_prediction, methods=["POST"]),
                Route("/v1/webhooks/default/secret", self.webhook_secret, methods=["GET"]),
                Route("/files/{id}/{file}", self.serve_file, methods=["GET"]),
            ]
        )

    @property
    def api_url(self) -> str:
        """The API's base URL, as ReplicateProvider is given it."""
        return f"{self.base_url}/v1"

    def reset(self) -> None:
        super().reset()
        self.predictions.clear()
        self.reads.clear()
        self.outcomes.clear()
        self.outcome = Outcome()
        self.throttled_until = 0.0

    def throttle(self, seconds: float) -> None:
        """Refuse every request for `seconds` from now, as Replicate throttles."""
        self.throttled_until = time.monotonic() + seconds

    # -- plumbing ------------------------------------------------------------------------

    async def _enter(self, request: Request) -> Response | None:
        """Record the request; answer an injection or an auth failure if there is one."""
        self.requests.append(Recorded.of(request, await request.body()))
        if (answer := await injected(self.injections, request)) is not None:
            return answer
        remaining = self.throttled_until - time.monotonic()
        if remaining > 0:
            return throttled(math.ceil(remaining))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        return None

    # -- endpoints -----------------------------------------------------------------------

    async def create_for_version(self, request: Request) -> Response:
        if (early := await self._enter(request)) is not None:
            return early
        body = orjson.loads(await request.body())
        version = body.get("version")
        if not isinstance(version, str) or not version:
            return _problem(422, "Input validation failed", "- version: version is required")
        return self._create(request, body, model="owner/model", version=version)

    async def create_for_model(self, request: Request) -> Response:
        if (early := await self._enter(request)) is not None:
            return early
        body = orjson.loads(await request.body())
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        return self._create(request, body, model=model, version="hidden")

    def _create(
        self, request: Request, body: dict[str, Any], *, model: str, version: str
    ) -> Response:
        if not isinstance(body.get("input"), dict):
            return _problem(422, "Input validation failed", "- input: Input is required")
        prediction_id = _prediction_id()
        base = str(request.base_url).rstrip("/")
        prediction = {
            "id": prediction_id,
            "model": model,
            "version": version,
            "input": body["input"],
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": "starting",
            "created_at": _now(),
            "urls": {
                "cancel": f"{base}/v1/predictions/{prediction_id}/cancel",
                "get": f"{base}/v1/predictions/{prediction_id}",
                "web": f"https://replicate.com/p/{prediction_id}",
            },
        }
        self.predictions[prediction_id] = prediction
        self.reads[prediction_id] = 0
        self.outcomes[prediction_id] = self.outcome
        if self.outcome.polls == 0:
            self._finish(prediction, base)
        return JSONResponse(prediction, status_code=201)

    async def get_prediction(self, request: Request) -> Response:
        if (early := await self._enter(request)) is not None:
            return early
        prediction = self.predictions.get(request.path_params["id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction["status"] in ("starting", "processing"):
            self.reads[prediction["id"]] += 1
            reads = self.reads[prediction["id"]]
            if reads >= self.outcomes[prediction["id"]].polls:
                self._finish(prediction, str(request.base_url).rstrip("/"))
            else:
                prediction["status"] = "processing"
                prediction["started_at"] = prediction.get("started_at") or _now()
                prediction["logs"] = (
                    f"Using seed: {prediction['input'].get('seed', 1)}\n"
                    "  0%|          | 0/4 [00:00<?, ?it/s]\n"
                    f" {50 * reads // 2}%|#####     | 2/4 [00:01<00:01,  2.00it/s]\n"
                )
        return JSONResponse(prediction)

    def _finish(self, prediction: dict[str, Any], base: str) -> None:
        outcome = self.outcomes[prediction["id"]]
        prediction["completed_at"] = _now()
        prediction["status"] = outcome.status
        if outcome.status == "failed":
            prediction["error"] = outcome.error or "CUDA error: an illegal memory access"
            prediction["logs"] += "Traceback (most recent call last):\n  ...\n"
            return
        count = int(prediction["input"].get("num_outputs", 1))
        urls = [f"{base}/files/{prediction['id']}/out-{i}.png" for i in range(count)]
        prediction["output"] = urls[0] if outcome.output_as_string else urls
        prediction["logs"] += "100%|##########| 4/4 [00:02<00:00,  2.00it/s]\n"
        prediction["metrics"] = {"predict_time": 2.1}

    async def cancel_prediction(self, request: Request) -> Response:
        if (early := await self._enter(request)) is not None:
            return early
        prediction = self.predictions.get(request.path_params["id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction["status"] in ("starting", "processing"):
            prediction["status"] = "canceled"
            prediction["completed_at"] = _now()
        return JSONResponse(prediction)

    async def webhook_secret(self, request: Request) -> Response:
        if (early := await self._enter(request)) is not None:
            return early
        return JSONResponse({"key": SIGNING_SECRET})

    async def serve_file(self, request: Request) -> Response:
        prediction = self.predictions.get(request.path_params["id"])
        if prediction is None or prediction["status"] != "succeeded":
            return Response(status_code=404)
        width = int(prediction["input"].get("width", 64))
        height = int(prediction["input"].get("height", 64))
        index = int(request.path_params["file"].removeprefix("out-").split(".")[0])
        return Response(png_bytes(width, height, index), media_type="image/png")


def png_bytes(width: int, height: int, index: int = 0) -> bytes:
    image = Image.new("RGB", (width, height), (40 * index % 256, 120, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def throttled(seconds: int) -> Response:
    """Replicate's throttling answer: the wait is in the body (Django REST framework's
    wording), not in a Retry-After header."""
    unit = "second" if seconds == 1 else "seconds"
    detail = f"Request was throttled. Expected available in {seconds} {unit}."
    return JSONResponse({"detail": detail}, status_code=429)


def _problem(status: int, title: str, detail: str) -> Response:
    body = {"title": title, "detail": detail, "status": status}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json")


def _prediction_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
