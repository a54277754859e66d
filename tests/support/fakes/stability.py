"""A fake Stability AI v2beta API that speaks its wire format: multipart/form-data
submissions, synchronous Stable Image endpoints answering image bytes (`Accept: image/*`,
with `finish-reason` / `seed` headers) or base64 JSON (`Accept: application/json`),
asynchronous jobs (`{"id": <64 hex>}`) whose results answer 202 `in-progress` a few times and
then 200 with the bytes, and Stability's error bodies (`{"id", "name", "errors"}`), including
403 `content_moderation`.

Every request is recorded with its parsed form, so tests assert exactly what was sent. A
prompt containing "forbidden" is refused by moderation; one containing "filtered" comes back
with finish reason CONTENT_FILTERED. `inject` scripts the next matching request's answer."""

from __future__ import annotations

import base64
import io
import secrets
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

import orjson
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fakes.injections import InjectableFake, Recorded, injected

# The start of an MP4 (ftyp + free boxes) and a little payload: opaque video bytes.
VIDEO_BYTES = (
    b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"
    b"\x00\x00\x00\x08free\x00\x00\x00\x10mdat" + b"\x00\x01\x02\x03\x04\x05\x06\x07"
)


@dataclass
class FilePart:
    filename: str
    content_type: str
    data: bytes


@dataclass
class FormRecorded(Recorded):
    """A request with its multipart form parsed (Stability takes every input as a form)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, FilePart] = field(default_factory=dict)


@dataclass
class Job:
    kind: str  # "video" or "image"
    result_path: str
    polls_left: int
    seed: int
    output_format: str = "png"
    width: int = 64
    height: int = 64


class FakeStability(InjectableFake[FormRecorded]):
    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.jobs: dict[str, Job] = {}
        self.in_progress_polls = 2
        self.app = Starlette(
            routes=[
                Route("/v2beta/stable-image/generate/{model}", self.generate, methods=["POST"]),
                Route("/v2beta/stable-image/upscale/creative", self.upscale, methods=["POST"]),
                Route("/v2beta/image-to-video", self.image_to_video, methods=["POST"]),
                Route("/v2beta/image-to-video/result/{id}", self.result, methods=["GET"]),
                Route("/v2beta/results/{id}", self.result, methods=["GET"]),
            ]
        )

    def reset(self) -> None:
        super().reset()
        self.jobs.clear()
        self.in_progress_polls = 2

    # -- plumbing ------------------------------------------------------------------------

    async def _enter(self, request: Request) -> Response | FormRecorded:
        body = await request.body()
        recorded = FormRecorded.of(request, body)
        self.requests.append(recorded)
        if (answer := await injected(self.injections, request)) is not None:
            return answer
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "unauthorized", "authorization: invalid or missing API key")
        if request.method == "POST":
            content_type = request.headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                return _error(400, "bad_request", "content-type: must be multipart/form-data")
            recorded.fields, recorded.files = _parse_form(content_type, body)
        return recorded

    # -- endpoints -----------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        entered = await self._enter(request)
        if isinstance(entered, Response):
            return entered
        fields = entered.fields
        prompt = fields.get("prompt", "")
        if not prompt:
            return _error(400, "bad_request", "prompt: cannot be empty")
        if "forbidden" in prompt:
            return _moderation()
        image_to_image = request.path_params["model"] == "sd3" and "image" in entered.files
        if image_to_image and fields.get("mode") != "image-to-image":
            return _error(400, "bad_request", "mode: must be image-to-image with an image")
        accept = request.headers.get("accept", "image/*")
        if accept not in ("image/*", "application/json"):
            return _error(400, "bad_request", "accept: must be image/* or application/json")
        width, height = _size(fields.get("aspect_ratio", "1:1"), entered.files.get("image"))
        output_format = fields.get("output_format", "png")
        seed = int(fields.get("seed", "0")) or 12345
        reason = "CONTENT_FILTERED" if "filtered" in prompt else "SUCCESS"
        data = png_bytes(width, height, seed, output_format)
        if accept == "application/json":
            encoded = base64.b64encode(data).decode()
            return JSONResponse({"image": encoded, "finish_reason": reason, "seed": seed})
        return Response(
            data,
            media_type=f"image/{output_format}",
            headers={"finish-reason": reason, "seed": str(seed)},
        )

    async def upscale(self, request: Request) -> Response:
        entered = await self._enter(request)
        if isinstance(entered, Response):
            return entered
        if "image" not in entered.files:
            return _error(400, "bad_request", "image: required")
        if "forbidden" in entered.fields.get("prompt", ""):
            return _moderation()
        return self._queue(
            Job(
                "image",
                "results",
                self.in_progress_polls,
                int(entered.fields.get("seed", "0")),
                entered.fields.get("output_format", "png"),
                128,
                128,
            )
        )

    async def image_to_video(self, request: Request) -> Response:
        entered = await self._enter(request)
        if isinstance(entered, Response):
            return entered
        if "image" not in entered.files:
            return _error(400, "bad_request", "image: required")
        return self._queue(
            Job(
                "video",
                "image-to-video/result",
                self.in_progress_polls,
                int(entered.fields.get("seed", "0")),
            )
        )

    def _queue(self, job: Job) -> Response:
        job_id = secrets.token_hex(32)
        self.jobs[job_id] = job
        return JSONResponse({"id": job_id})

    async def result(self, request: Request) -> Response:
        entered = await self._enter(request)
        if isinstance(entered, Response):
            return entered
        job_id = request.path_params["id"]
        job = self.jobs.get(job_id)
        if job is None or not request.url.path.startswith(f"/v2beta/{job.result_path}/"):
            return _error(404, "not_found", f"id: no generation found for {job_id}")
        if job.polls_left > 0:
            job.polls_left -= 1
            return JSONResponse({"id": job_id, "status": "in-progress"}, status_code=202)
        accept = request.headers.get("accept", "*/*")
        if job.kind == "video":
            data, media_type, field_name = VIDEO_BYTES, "video/mp4", "video"
        else:
            data = png_bytes(job.width, job.height, job.seed, job.output_format)
            media_type, field_name = f"image/{job.output_format}", "image"
        if accept == "application/json":
            encoded = base64.b64encode(data).decode()
            return JSONResponse({field_name: encoded, "finish_reason": "SUCCESS", "seed": job.seed})
        return Response(
            data, media_type=media_type, headers={"finish-reason": "SUCCESS", "seed": str(job.seed)}
        )


def png_bytes(width: int, height: int, seed: int = 0, output_format: str = "png") -> bytes:
    image = Image.new("RGB", (width, height), (seed % 256, 90, 160))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if output_format in ("jpeg", "jpg") else output_format.upper())
    return buffer.getvalue()


def _size(aspect_ratio: str, image: FilePart | None) -> tuple[int, int]:
    if image is not None:
        with Image.open(io.BytesIO(image.data)) as opened:
            return opened.size
    w, h = (int(part) for part in aspect_ratio.split(":"))
    scale = 64 // max(w, h)
    return w * scale, h * scale


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, FilePart]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    files: dict[str, FilePart] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode()
        else:
            files[name] = FilePart(filename, part.get_content_type(), payload)
    return fields, files


def _error(status: int, name: str, *errors: str) -> Response:
    body = {"id": secrets.token_hex(16), "name": name, "errors": list(errors)}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _moderation() -> Response:
    return _error(
        403,
        "content_moderation",
        "Your request was flagged by our content moderation system, as a result your request "
        "was denied and you were not charged.",
    )
