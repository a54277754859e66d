"""A fake Replicate-like HTTP API for the in-flight benchmark: every prediction takes
BENCH_FAKE_SECONDS of wall time (it reports `processing` until then, `succeeded` with one PNG
URL after), whatever the number of predictions in flight. Run it as its own process:

    BENCH_FAKE_SECONDS=10 uvicorn bench.fake_replicate:app --port PORT
"""

from __future__ import annotations

import io
import itertools
import os
import time
from datetime import UTC, datetime
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECONDS = float(os.environ.get("BENCH_FAKE_SECONDS", "10"))
TOKEN = os.environ.get("BENCH_FAKE_TOKEN", "r8_bench_fake")
_ids = itertools.count(1)
_predictions: dict[str, dict[str, Any]] = {}
_created: dict[str, float] = {}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _unauthorised(request: Request) -> Response | None:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        return JSONResponse({"title": "Unauthenticated", "status": 401}, status_code=401)
    return None


async def create(request: Request) -> Response:
    if (denied := _unauthorised(request)) is not None:
        return denied
    body = await request.json()
    prediction_id = f"bench{next(_ids):020d}"
    base = str(request.base_url).rstrip("/")
    prediction = {
        "id": prediction_id,
        "model": f"{request.path_params['owner']}/{request.path_params['name']}",
        "version": "hidden",
        "input": body.get("input", {}),
        "logs": "",
        "output": None,
        "error": None,
        "status": "starting",
        "created_at": _now(),
        "urls": {
            "get": f"{base}/v1/predictions/{prediction_id}",
            "cancel": f"{base}/v1/predictions/{prediction_id}/cancel",
        },
    }
    _predictions[prediction_id] = prediction
    _created[prediction_id] = time.monotonic()
    return JSONResponse(prediction, status_code=201)


async def get(request: Request) -> Response:
    if (denied := _unauthorised(request)) is not None:
        return denied
    prediction_id = request.path_params["id"]
    prediction = _predictions.get(prediction_id)
    if prediction is None:
        return JSONResponse({"title": "Not found", "status": 404}, status_code=404)
    if prediction["status"] in ("starting", "processing"):
        if time.monotonic() - _created[prediction_id] >= SECONDS:
            base = str(request.base_url).rstrip("/")
            prediction.update(
                status="succeeded",
                output=[f"{base}/files/{prediction_id}/out-0.png"],
                completed_at=_now(),
                metrics={"predict_time": SECONDS},
            )
        else:
            prediction["status"] = "processing"
    return JSONResponse(prediction)


async def cancel(request: Request) -> Response:
    prediction = _predictions.get(request.path_params["id"])
    if prediction is None:
        return JSONResponse({"title": "Not found", "status": 404}, status_code=404)
    if prediction["status"] in ("starting", "processing"):
        prediction["status"] = "canceled"
    return JSONResponse(prediction)


async def file(request: Request) -> Response:
    return Response(PNG, media_type="image/png")


app = Starlette(
    routes=[
        Route("/v1/models/{owner}/{name}/predictions", create, methods=["POST"]),
        Route("/v1/predictions/{id}", get, methods=["GET"]),
        Route("/v1/predictions/{id}/cancel", cancel, methods=["POST"]),
        Route("/files/{id}/{file}", file, methods=["GET"]),
    ]
)
