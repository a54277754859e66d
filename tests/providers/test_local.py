"""The built-in local provider: real PNG / animated WebP / text made on this machine."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from models.generation import GenerationKind
from providers.base import Finished, ProviderError, ProviderRequest
from providers.local import LocalProvider
from providers.registry import ProviderRegistry
from tests.support.providers import Progress, generate, image_of


@pytest.fixture
def provider() -> LocalProvider:
    return LocalProvider(step_delay=0)


def request(kind: GenerationKind = GenerationKind.IMAGE, **overrides) -> ProviderRequest:
    fields: dict[str, Any] = {
        "model": "local",
        "prompt": "a copper lantern by the river",
        "seed": 42,
    }
    fields.update(overrides)
    return ProviderRequest(kind=kind, **fields)


@pytest.mark.parametrize(("width", "height"), [(64, 48), (33, 97), (200, 120)])
async def test_image_is_a_png_of_the_requested_size(provider, width, height):
    [output] = await generate(provider, request(width=width, height=height))
    assert output.content_type == "image/png"
    assert (output.width, output.height) == (width, height)
    assert output.text is None
    image = image_of(output)
    assert image.format == "PNG"
    assert image.size == (width, height)


async def test_image_without_size_defaults_to_512(provider):
    [output] = await generate(provider, request())
    assert image_of(output).size == (512, 512)
    assert (output.width, output.height) == (512, 512)


async def test_image_is_deterministic_for_prompt_and_seed(provider):
    [first] = await generate(provider, request(width=64, height=64, seed=7))
    [again] = await generate(provider, request(width=64, height=64, seed=7))
    assert first.data == again.data


async def test_image_differs_for_another_seed_or_prompt(provider):
    [base] = await generate(provider, request(width=64, height=64, seed=7))
    [other_seed] = await generate(provider, request(width=64, height=64, seed=8))
    [other_prompt] = await generate(
        provider, request(width=64, height=64, seed=7, prompt="an amber meadow")
    )
    assert base.data != other_seed.data
    assert base.data != other_prompt.data
    assert image_of(base).tobytes() != image_of(other_seed).tobytes()


async def test_several_outputs_are_distinct_images(provider):
    outputs = await generate(provider, request(width=48, height=32, num_outputs=3))
    assert len(outputs) == 3
    assert len({o.data for o in outputs}) == 3
    assert len({image_of(o).tobytes() for o in outputs}) == 3
    for output in outputs:
        assert output.content_type == "image/png"
        assert image_of(output).size == (48, 32)


async def test_video_is_an_animated_webp(provider):
    [output] = await generate(provider, request(GenerationKind.VIDEO, width=96, height=64))
    assert output.content_type == "image/webp"
    assert (output.width, output.height) == (96, 64)
    image: Any = Image.open(io.BytesIO(output.data or b""))
    assert image.format == "WEBP"
    assert image.size == (96, 64)
    assert image.is_animated
    assert image.n_frames > 1
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(image.convert("RGB").tobytes())
    assert len(set(frames)) > 1  # it moves


async def test_video_is_deterministic(provider):
    req = request(GenerationKind.VIDEO, width=64, height=64)
    [first] = await generate(provider, req)
    [again] = await generate(provider, req)
    assert first.data == again.data


async def test_text_is_plain_text(provider):
    [output] = await generate(provider, request(GenerationKind.TEXT))
    assert output.content_type == "text/plain"
    assert output.text
    assert output.data == output.text.encode()
    assert (output.width, output.height) == (None, None)
    assert len(output.text.split()) >= 9


async def test_text_is_deterministic_and_seed_dependent(provider):
    [first] = await generate(provider, request(GenerationKind.TEXT, seed=1))
    [again] = await generate(provider, request(GenerationKind.TEXT, seed=1))
    [other] = await generate(provider, request(GenerationKind.TEXT, seed=2))
    assert first.text == again.text
    assert first.text != other.text


@pytest.mark.parametrize("kind", [GenerationKind.IMAGE, GenerationKind.VIDEO, GenerationKind.TEXT])
@pytest.mark.parametrize("num_outputs", [1, 3])
async def test_progress_is_reported_in_order_and_ends_at_one(provider, kind, num_outputs):
    progress = Progress()
    req = request(kind, width=32, height=32, num_outputs=num_outputs)
    result = await provider.start(req, progress)
    assert isinstance(result, Finished) and len(result.outputs) == num_outputs
    fractions = progress.fractions
    assert len(fractions) >= 3
    assert fractions == sorted(fractions)
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions[-1] == 1.0
    assert fractions[0] < 1.0
    assert all(isinstance(stage, str) and stage for _, stage in progress.calls)


async def test_configured_failure_raises_a_non_retryable_provider_error(provider):
    progress = Progress()
    req = request(width=32, height=32, params={"fail": "PROVIDER_ERROR"})
    with pytest.raises(ProviderError) as caught:
        await provider.start(req, progress)
    assert caught.value.code == "PROVIDER_ERROR"
    assert caught.value.retryable is False
    assert caught.value.message
    assert 1.0 not in progress.fractions  # it never reported completion


async def test_configured_failure_uses_the_given_code(provider):
    req = request(GenerationKind.TEXT, params={"fail": "CONTENT_REJECTED"})
    with pytest.raises(ProviderError) as caught:
        await generate(provider, req)
    assert caught.value.code == "CONTENT_REJECTED"
    assert caught.value.retryable is False


def test_provider_error_defaults_to_retryable():
    error = ProviderError("PROVIDER_TIMEOUT", "took too long")
    assert (error.code, error.message, error.retryable) == (
        "PROVIDER_TIMEOUT",
        "took too long",
        True,
    )
    assert str(error) == "took too long"


def test_registry_finds_providers_by_name(provider):
    registry = ProviderRegistry({"local": provider})
    assert registry.get("local") is provider
    assert registry.get("replicate") is None


async def test_image_to_image_blends_the_input_by_strength(provider):
    source = io.BytesIO()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(source, "PNG")
    kept = await generate(provider, request(input_image=source.getvalue(), strength=0.0))
    [output] = kept
    assert (output.width, output.height) == (40, 20)  # the input's size when none is asked
    with Image.open(io.BytesIO(output.data or b"")) as image:
        assert image.convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    [mixed] = await generate(
        provider, request(input_image=source.getvalue(), strength=0.5, width=64, height=64)
    )
    with Image.open(io.BytesIO(mixed.data or b"")) as image:
        assert image.size == (64, 64) and image.convert("RGB").getpixel((5, 5)) != (255, 0, 0)
    with pytest.raises(ProviderError):
        await generate(provider, request(input_image=b"not an image"))


@pytest.mark.parametrize(
    ("kind", "size", "threads"),
    [
        (GenerationKind.IMAGE, 64, 0),  # a thumbnail costs less than a thread hop
        (GenerationKind.IMAGE, 128, 0),
        (GenerationKind.IMAGE, 129, 1),
        (GenerationKind.IMAGE, None, 1),  # 512 x 512 by default
        (GenerationKind.TEXT, None, 0),
        (GenerationKind.VIDEO, 64, 1),
    ],
)
async def test_only_small_outputs_are_drawn_on_the_event_loop(
    provider, monkeypatch, kind, size, threads
):
    import providers.local as local

    hops: list[str] = []
    real = local.asyncio.to_thread

    async def counted(function, *args):
        hops.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(local.asyncio, "to_thread", counted)
    outputs = await generate(provider, request(kind, width=size, height=size))
    assert len(hops) == threads
    inline = local._render(request(kind, width=size, height=size), local.random.Random(0))
    assert outputs[0].content_type == inline.content_type
