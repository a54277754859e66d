"""A fake Replicate-like HTTP API for the in-flight benchmark: every prediction takes
BENCH_FAKE_SECONDS of wall time (it reports `processing` until then, `succeeded` with one PNG
URL after, `completed_at` being when it finished), whatever the number of predictions in
flight. A prediction created with a `webhook` is POSTed there when it finishes, signed the way
Replicate signs (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the base64 part of
BENCH_FAKE_WEBHOOK_SECRET, `whsec_...`). Run it as its own process:

    BENCH_FAKE_SECONDS=10 uvicorn bench.fake_replicate:app --port PORT
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import itertools
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECONDS = float(os.environ.get("BENCH_FAKE_SECONDS", "10"))
TOKEN = os.environ.get("BENCH_FAKE_TOKEN", "r8_bench_fake")
WEBHOOK_SECRET = os.environ.get("BENCH_FAKE_WEBHOOK_SECRET", "")
_ids = itertools.count(1)
_predictions: dict[str, dict[str, Any]] = {}
_created: dict[str, float] = {}
_created_at: dict[str, datetime] = {}
_tasks: set[asyncio.Task[None]] = set()
_client: httpx.AsyncClient | None = None
log = logging.getLogger("fake_replicate")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(UTC))


def _settle(prediction_id: str, base: str) -> dict[str, Any]:
    """The prediction as it is now: `succeeded` once SECONDS have passed since it was made."""
    prediction = _predictions[prediction_id]
    if prediction["status"] in ("starting", "processing"):
        if time.monotonic() - _created[prediction_id] >= SECONDS:
            prediction.update(
                status="succeeded",
                output=[f"{base}/files/{prediction_id}/out-0.png"],
                completed_at=_iso(_created_at[prediction_id] + timedelta(seconds=SECONDS)),
                metrics={"predict_time": SECONDS},
            )
        else:
            prediction["status"] = "processing"
    return prediction


def _signed(body: bytes) -> dict[str, str]:
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    message_id = f"msg_{time.monotonic_ns()}"
    timestamp = str(int(time.time()))
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }


async def _deliver(prediction_id: str, url: str, base: str) -> None:
    """The `completed` webhook, when the prediction finishes (retried a few times, as
    Replicate does)."""
    global _client
    await asyncio.sleep(max(0.0, _created[prediction_id] + SECONDS - time.monotonic()))
    body = orjson.dumps(_settle(prediction_id, base))
    if _client is None:
        _client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64))
    for attempt in range(5):
        try:
            response = await _client.post(url, content=body, headers=_signed(body))
            if response.status_code < 500:
                return
        except httpx.HTTPError as error:
            log.warning("webhook %s failed: %r", prediction_id, error)
        await asyncio.sleep(0.5 * 2**attempt)


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
    _created_at[prediction_id] = datetime.now(UTC)
    webhook = body.get("webhook")
    if webhook and WEBHOOK_SECRET:
        task = asyncio.create_task(_deliver(prediction_id, webhook, base))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    return JSONResponse(prediction, status_code=201)


async def get(request: Request) -> Response:
    if (denied := _unauthorised(request)) is not None:
        return denied
    prediction_id = request.path_params["id"]
    if prediction_id not in _predictions:
        return JSONResponse({"title": "Not found", "status": 404}, status_code=404)
    return JSONResponse(_settle(prediction_id, str(request.base_url).rstrip("/")))


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
