"""The built-in provider: real files made on this machine, no network, no keys.

IMAGE: a PNG drawn with Pillow, deterministic from prompt + seed, at the asked size; with an
input image, the drawing is blended over it by `strength` (image-to-image).
VIDEO: an animated WebP. TEXT: a deterministic paragraph built from the prompt.
Route params may slow it down (`delay` seconds per step) or make it fail (`fail = "CODE"`),
for demos and for tests of slow and failing providers.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from functools import lru_cache

from PIL import Image, ImageDraw

from models.generation import GenerationKind
from providers.base import (
    Finished,
    ProgressCallback,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
    Synchronous,
)

STEPS = ("composing", "rendering", "finishing")
WORDS = (
    "light",
    "shadow",
    "amber",
    "quiet",
    "river",
    "glass",
    "ember",
    "meadow",
    "signal",
    "copper",
    "drift",
    "lantern",
    "velvet",
    "harbor",
    "spiral",
    "echo",
)


class LocalProvider(Synchronous):
    label = "local provider"
    name = "local"

    def __init__(self, step_delay: float = 0.3) -> None:
        self.step_delay = step_delay

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        outputs = []
        delay = float(request.params.get("delay", self.step_delay))
        total_steps = request.num_outputs * len(STEPS)
        for index in range(request.num_outputs):
            for step, stage in enumerate(STEPS):
                done = index * len(STEPS) + step
                await progress(done / total_steps, stage)
                await asyncio.sleep(delay)
            failure = request.params.get("fail")
            if failure:
                raise ProviderError(
                    str(failure), "The local provider was configured to fail.", retryable=False
                )
            rng = random.Random(_seed(request, index))
            if _small(request):
                # A thumbnail draws in less time than a hop to a thread and back costs.
                outputs.append(_render(request, rng))
            else:
                outputs.append(await asyncio.to_thread(_render, request, rng))
        await progress(1.0, "done")
        return Finished(outputs)


# Drawn on the event loop up to this many pixels (64 x 64: ~0.2 ms; a thread hop: ~0.1 ms of
# CPU plus two wake-ups); bigger pictures, videos and image-to-image go to a thread.
INLINE_PIXELS = 128 * 128


def _small(request: ProviderRequest) -> bool:
    if request.kind is GenerationKind.TEXT:
        return True
    if request.kind is not GenerationKind.IMAGE or request.input_image is not None:
        return False
    width, height = request.width or 512, request.height or 512
    return width * height <= INLINE_PIXELS


def _seed(request: ProviderRequest, index: int) -> int:
    material = f"{request.prompt}\x00{request.seed}\x00{index}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


def _render(request: ProviderRequest, rng: random.Random) -> ProviderOutput:
    if request.kind == GenerationKind.TEXT:
        text = _text(request.prompt, rng)
        return ProviderOutput(content_type="text/plain", data=text.encode(), text=text)
    source = _input(request)
    default = source.size if source else (512, 512)
    width, height = request.width or default[0], request.height or default[1]
    if request.kind == GenerationKind.VIDEO:
        frames = [_picture(width, height, rng, shift=i) for i in range(8)]
        buffer = io.BytesIO()
        frames[0].save(
            buffer,
            "WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=125,
            loop=0,
            quality=70,
        )
        return ProviderOutput("image/webp", buffer.getvalue(), width=width, height=height)
    picture = _picture(width, height, rng)
    if source is not None:
        # Image-to-image: strength 0 keeps the input, 1 replaces it with the pattern.
        strength = request.strength if request.strength is not None else 0.5
        picture = Image.blend(source.resize((width, height)), picture, strength)
    buffer = io.BytesIO()
    # Fast zlib level: the same pixels, a slightly bigger file, a third of the encode time.
    picture.save(buffer, "PNG", optimize=False, compress_level=1)
    return ProviderOutput("image/png", buffer.getvalue(), width=width, height=height)


def _input(request: ProviderRequest) -> Image.Image | None:
    if request.input_image is None:
        return None
    try:
        with Image.open(io.BytesIO(request.input_image)) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ProviderError(
            "PROVIDER_REJECTED", "The input image could not be read.", retryable=False
        ) from error


def _picture(width: int, height: int, rng: random.Random, shift: int = 0) -> Image.Image:
    state = rng.getstate()
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    gradient = _gradient(width, height)
    image = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient
    )
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(4, max(5, min(width, height) // 4))
        x = (x + shift * width // 16) % width
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    rng.setstate(state)  # every frame of a video draws the same shapes, moved
    return image


@lru_cache(maxsize=16)
def _gradient(width: int, height: int) -> Image.Image:
    """The vertical blend mask of a size (resizing it was a third of drawing a small image).
    Only ever read: Image.composite does not modify its mask."""
    return Image.linear_gradient("L").resize((width, height))


def _text(prompt: str, rng: random.Random) -> str:
    words = [w for w in prompt.split() if w.isalpha()] or list(WORDS)
    sentences = []
    for _ in range(3):
        picked = [rng.choice(words if rng.random() < 0.5 else WORDS) for _ in range(9)]
        sentences.append(" ".join(picked).capitalize() + ".")
    return " ".join(sentences)
