"""What the Gemini and OpenAI fakes share: every request recorded, answers scripted for
the next requests (`fake.next(Scripted(...))`) given instead of the normal one, and the small
PNGs their images are made of."""

from __future__ import annotations

import asyncio
import io
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response


@dataclass
class Scripted:
    status: int = 200
    json: Any = None
    text: str | None = None  # an HTML body instead of JSON (a proxy's error page)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


async def played(answer: Scripted) -> Response:
    """The response the script asks for, after its delay."""
    if answer.delay:
        await asyncio.sleep(answer.delay)
    if answer.text is not None:
        return Response(answer.text, answer.status, answer.headers, media_type="text/html")
    return Response(orjson.dumps(answer.json), answer.status, answer.headers, "application/json")


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, str, bytes]] = field(default_factory=dict)


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """multipart/form-data by hand (byte-exact; python-multipart is not a dependency)."""
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip('"').encode()
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = dict(
            item.strip().split("=", 1)
            for item in headers.get("content-disposition", "").split(";")
            if "=" in item
        )
        name = disposition["name"].strip('"')
        if "filename" in disposition:
            files[name] = (
                disposition["filename"].strip('"'),
                headers.get("content-type", ""),
                data,
            )
        else:
            fields[name] = data.decode()
    return fields, files


class ScriptedFake:
    """What the Gemini and OpenAI fakes share: every request recorded (its JSON or
    multipart form parsed), and the answers scripted with `next()` given before any other.
    They are served from a thread, so both lists are guarded by a lock."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.base_url = ""  # set by served() once the server listens
        self.requests: list[Recorded] = []
        self._queue: list[Scripted] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def next(self, answer: Scripted) -> None:
        """The next request gets `answer` (after the fake has recorded it)."""
        with self._lock:
            self._queue.append(answer)

    async def _record(self, request: Request) -> Recorded:
        body = await request.body()
        recorded = Recorded(
            request.method,
            request.url.path,
            request.url.query,
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            recorded.json = orjson.loads(body)
        elif content_type.startswith("multipart/form-data"):
            recorded.fields, recorded.files = parse_multipart(content_type, body)
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _take_scripted(self) -> Scripted | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    async def _scripted(self) -> Response | None:
        answer = self._take_scripted()
        return None if answer is None else await played(answer)
