"""A fake fal queue (https://queue.fal.run) speaking fal's documented wire format, served
over real HTTP with `tests.support.fake_server.serve`.

- POST /{model_id}[?fal_webhook=...]            submit: request_id, *_url, queue_position
- GET  /{owner}/{app}/requests/{id}/status       IN_QUEUE (positions count down) ->
                                                 IN_PROGRESS (runner logs) -> COMPLETED,
                                                 one step per poll; 202 until complete, then 200
- GET  /{owner}/{app}/requests/{id}              the model output (images / video)
- PUT  /{owner}/{app}/requests/{id}/cancel       CANCELLATION_REQUESTED / ALREADY_COMPLETED
- GET  /files/{name}                             the output files: real PNG / WebP bytes
- GET  /.well-known/jwks.json                    the webhook public keys

Status, result and cancel answer only on the app root (owner/app), as fal does, so a client
that puts the endpoint sub-path there gets a 404. Every request is recorded, and failures
can be queued per operation (`fail`) or slowed down (`slow`)."""

from __future__ import annotations

import asyncio
import io
import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NAMESPACES = ("workflows", "comfy")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Job:
    request_id: str
    model: str
    root: str
    input: dict[str, Any]
    webhook: str | None
    positions: list[int]
    polls: int = 0
    cancelled: bool = False

    @property
    def state(self) -> str:
        if self.polls < len(self.positions):
            return "IN_QUEUE"
        if self.polls == len(self.positions):
            return "IN_PROGRESS"
        return "COMPLETED"


@dataclass
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class FakeFal:
    def __init__(self, api_key: str, queue_positions: tuple[int, ...] = (2, 1)) -> None:
        self.api_key = api_key
        self.queue_positions = list(queue_positions)
        self.base_url = ""  # set once served
        self.requests: list[Recorded] = []
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, tuple[str, bytes]] = {}
        self.jwks: dict[str, Any] = {"keys": []}
        # What the next COMPLETED request carries.
        self.nsfw: list[bool] | bool = False
        self.status_error: dict[str, Any] | None = None  # error fields in a COMPLETED status
        self.result_override: Canned | None = None  # e.g. the model's 422
        self._canned: dict[str, deque[Canned]] = defaultdict(deque)
        self._delays: dict[str, float] = {}
        self._ids = itertools.count(1)
        self.app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])]
        )

    # -- scripting -------------------------------------------------------------------------

    def fail(
        self,
        operation: str,
        status: int,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `operation` (submit, status, result, cancel, jwks)
        with this status and body."""
        content = raw if raw is not None else orjson.dumps(body if body is not None else {})
        for _ in range(times):
            self._canned[operation].append(Canned(status, content, headers or {}))

    def slow(self, operation: str, seconds: float) -> None:
        self._delays[operation] = seconds

    def calls(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if _operation(r.method, r.path) == operation]

    # -- the server ------------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response:
        path = request.url.path.strip("/")
        body = await request.body()
        self.requests.append(
            Recorded(
                request.method,
                "/" + path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        operation = _operation(request.method, "/" + path)
        delay = self._delays.get(operation)
        if delay:
            await asyncio.sleep(delay)
        if operation == "files":
            return self._file(path.removeprefix("files/"))
        if operation == "jwks":
            return self._canned_or(operation) or _json(self.jwks)
        if request.headers.get("authorization") != f"Key {self.api_key}":
            # Like some real services, the error echoes what it was sent.
            detail = f"Invalid key: {request.headers.get('authorization')}"
            return _json({"detail": detail}, 401)
        canned = self._canned_or(operation)
        if canned is not None:
            return canned
        if operation == "submit":
            return self._submit(path, request, body)
        root, _, rest = path.partition("/requests/")
        request_id = rest.split("/")[0]
        job = self.jobs.get(request_id)
        if job is None or job.root != root:
            return _json({"detail": "Not Found"}, 404)
        if operation == "status":
            return self._status(job, request.query_params.get("logs") == "1")
        if operation == "result":
            return self._result(job)
        return self._cancel(job)

    def _canned_or(self, operation: str) -> Response | None:
        queue = self._canned.get(operation)
        if not queue:
            return None
        canned = queue.popleft()
        return Response(
            canned.body,
            canned.status,
            headers=canned.headers,
            media_type=canned.headers.get("content-type", "application/json"),
        )

    def _submit(self, model: str, request: Request, body: bytes) -> Response:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _json({"detail": "Invalid JSON"}, 400)
        if not isinstance(data.get("prompt"), str):
            return _validation("prompt", "field required", "missing")
        request_id = f"{next(self._ids):08d}-fake-4000-8000-fa1000000000"
        root = _root(model)
        job = Job(
            request_id,
            model,
            root,
            data,
            request.query_params.get("fal_webhook"),
            list(self.queue_positions),
        )
        self.jobs[request_id] = job
        urls = f"{self.base_url}/{root}/requests/{request_id}"
        return _json(
            {
                "request_id": request_id,
                "gateway_request_id": request_id,
                "response_url": urls,
                "status_url": f"{urls}/status",
                "cancel_url": f"{urls}/cancel",
                "queue_position": job.positions[0] if job.positions else 0,
                "status": "IN_QUEUE",
            }
        )

    def _status(self, job: Job, logs: bool) -> Response:
        if job.state != "COMPLETED":
            job.polls += 1
        urls = f"{self.base_url}/{job.root}/requests/{job.request_id}"
        answer: dict[str, Any] = {
            "status": job.state,
            "request_id": job.request_id,
            "response_url": urls,
            "status_url": f"{urls}/status",
            "cancel_url": f"{urls}/cancel",
        }
        if job.state == "IN_QUEUE":
            answer["queue_position"] = job.positions[job.polls]
        elif job.state == "IN_PROGRESS":
            answer["logs"] = (
                [
                    {"message": "Loading model", "level": "INFO", "timestamp": "2026-01-01"},
                    {"message": " 50%|#####     | 14/28 [00:02<00:02]", "level": "INFO"},
                ]
                if logs
                else None
            )
        else:
            answer["logs"] = [] if logs else None
            answer["metrics"] = {"inference_time": 1.5}
            if self.status_error:
                answer.update(self.status_error)
        return _json(answer, 200 if job.state == "COMPLETED" else 202)

    def _result(self, job: Job) -> Response:
        if job.state != "COMPLETED":
            return _json({"detail": "Request is still in progress"}, 400)
        if self.result_override is not None:
            o = self.result_override
            return Response(o.body, o.status, headers=o.headers, media_type="application/json")
        return _json(self.output(job))

    def output(self, job: Job) -> dict[str, Any]:
        """The model's output for a finished job (also what a webhook payload carries)."""
        size = job.input.get("image_size")
        width, height = (size["width"], size["height"]) if isinstance(size, dict) else (48, 32)
        if "video" in job.model:
            name = f"{job.request_id}.webp"
            self.files[name] = ("image/webp", _webp(width, height))
            return {
                "video": {
                    "url": f"{self.base_url}/files/{name}",
                    "content_type": "image/webp",
                    "file_name": name,
                    "file_size": len(self.files[name][1]),
                },
                "seed": job.input.get("seed", 7),
            }
        count = int(job.input.get("num_images", 1))
        images = []
        for index in range(count):
            name = f"{job.request_id}-{index}.png"
            self.files[name] = ("image/png", _png(width, height, index))
            images.append(
                {
                    "url": f"{self.base_url}/files/{name}",
                    "content_type": "image/png",
                    "file_name": name,
                    "file_size": len(self.files[name][1]),
                    "width": width,
                    "height": height,
                }
            )
        nsfw = self.nsfw if isinstance(self.nsfw, list) else [self.nsfw] * count
        return {
            "images": images,
            "timings": {"inference": 1.2},
            "seed": job.input.get("seed", 7),
            "has_nsfw_concepts": nsfw,
            "prompt": job.input["prompt"],
        }

    def _cancel(self, job: Job) -> Response:
        if job.state == "COMPLETED":
            return _json({"status": "ALREADY_COMPLETED"}, 400)
        job.cancelled = True
        return _json({"status": "CANCELLATION_REQUESTED"}, 202)

    def _file(self, name: str) -> Response:
        if name not in self.files:
            return _json({"detail": "Not Found"}, 404)
        content_type, data = self.files[name]
        return Response(data, 200, media_type=content_type)


def _operation(method: str, path: str) -> str:
    if path.startswith("/files/"):
        return "files"
    if path == "/.well-known/jwks.json":
        return "jwks"
    if method == "POST":
        return "submit"
    if "/requests/" not in path:
        return "unknown"
    if method == "PUT" and path.endswith("/cancel"):
        return "cancel"
    if path.endswith("/status"):
        return "status"
    return "result"


def _root(model: str) -> str:
    parts = model.split("/")
    return "/".join(parts[:3] if parts[0] in NAMESPACES else parts[:2])


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _validation(field_name: str, message: str, kind: str) -> Response:
    return _json(
        {"detail": [{"loc": ["body", field_name], "msg": message, "type": kind}]},
        422,
    )


def _png(width: int, height: int, index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40 * index % 256, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _webp(width: int, height: int) -> bytes:
    frames = [Image.new("RGB", (width, height), (i * 60, 80, 160)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()
