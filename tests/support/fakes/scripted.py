"""Scripted answers the Gemini and OpenAI fakes give their next requests instead of the
normal one (`fake.next(Scripted(...))`), and the small PNGs their images are made of."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image
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
