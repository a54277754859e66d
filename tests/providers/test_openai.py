"""The OpenAI-compatible adapter against a fake OpenAI server speaking its real wire format."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from models.generation import GenerationKind
from providers.base import Finished, ProviderError, ProviderRequest
from providers.http import ProviderHTTP
from providers.openai import OpenAIProvider
from tests.support.fakes import served
from tests.support.fakes.openai import API_KEY, FakeOpenAI, error
from tests.support.fakes.scripted import Scripted, png
from tests.support.providers import (
    Progress,
    Sink,
    assert_key_kept_secret,
    failure,
    generate,
    image_of,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with served(FakeOpenAI()) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeOpenAI) -> None:
    fake.reset()


def make(fake: FakeOpenAI, client: httpx.AsyncClient, sink: Sink, **kwargs: Any) -> OpenAIProvider:
    kwargs.setdefault("api_key", API_KEY)
    return OpenAIProvider(
        ProviderHTTP("openai", client, sink), base_url=f"{fake.base_url}/v1", **kwargs
    )


@pytest.fixture
def provider(fake: FakeOpenAI, client: httpx.AsyncClient, sink: Sink) -> OpenAIProvider:
    return make(fake, client, sink)


def request(kind: GenerationKind = GenerationKind.IMAGE, **overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "model": "gpt-image-1",
        "prompt": "a copper lantern by the river",
        "timeout": 10.0,
    }
    fields.update(overrides)
    return ProviderRequest(kind=kind, **fields)


# -- images -----------------------------------------------------------------------------------


async def test_image_is_generated_as_base64_png(fake, provider, sink):
    progress = Progress()
    result = await provider.start(request(width=1536, height=1024), progress)
    assert isinstance(result, Finished)
    [output] = result.outputs
    assert output.content_type == "image/png"
    assert output.url is None
    assert (output.width, output.height) == (1536, 1024)
    assert image_of(output).size == (1536, 1024)
    assert progress.calls[-1] == (1.0, "done")

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/images/generations"
    assert sent.query == ""
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    # GPT image models always answer base64 and refuse `response_format`.
    assert sent.json == {
        "model": "gpt-image-1",
        "prompt": "a copper lantern by the river",
        "n": 1,
        "size": "1536x1024",
    }
    [record] = sink.records
    assert record.provider == "openai" and record.model == "gpt-image-1"
    assert record.ok and record.status_code == 200 and record.error is None
    assert record.url.endswith("/v1/images/generations")
    assert_key_kept_secret(sink, API_KEY)


async def test_dall_e_is_asked_for_b64_json(fake, provider):
    [output] = await generate(provider, request(model="dall-e-2", width=256, height=256))
    assert image_of(output).format == "PNG"
    assert fake.requests[0].json["response_format"] == "b64_json"


async def test_several_images_in_one_call(fake, provider):
    outputs = await generate(provider, request(num_outputs=3, width=1024, height=1536))
    assert len(outputs) == 3
    assert len({o.data for o in outputs}) == 3
    assert all(image_of(o).size == (1024, 1536) for o in outputs)
    [sent] = fake.requests
    assert sent.json["n"] == 3


async def test_dall_e_3_makes_one_call_per_image(fake, provider):
    outputs = await generate(
        provider, request(model="dall-e-3", num_outputs=2, width=1024, height=1024)
    )
    assert len(outputs) == 2
    assert [r.json["n"] for r in fake.requests] == [1, 1]


async def test_a_server_that_ignores_n_is_asked_again(fake, provider):
    one = {"created": 1, "data": [{"b64_json": base64.b64encode(png(8, 8)).decode()}]}
    fake.next(Scripted(200, one))
    fake.next(Scripted(200, one))
    outputs = await generate(provider, request(num_outputs=2))
    assert len(outputs) == 2
    assert [r.json["n"] for r in fake.requests] == [2, 1]


async def test_url_outputs_are_returned_as_urls(fake, provider):
    outputs = await generate(
        provider, request(model="dall-e-2", num_outputs=2, params={"response_format": "url"})
    )
    assert len(outputs) == 2
    for output in outputs:
        assert output.data is None
        assert output.url and output.url.startswith(f"{fake.base_url}/files/")
    assert fake.requests[0].json["response_format"] == "url"
    async with httpx.AsyncClient() as client:
        downloaded = await client.get(outputs[0].url or "")
    assert Image.open(io.BytesIO(downloaded.content)).format == "PNG"


async def test_route_params_override_size_and_pass_through(fake, provider):
    params = {"size": "1024x1536", "quality": "low", "style": "vivid", "delay": 3}
    await generate(provider, request(width=64, height=64, params=params))
    body = fake.requests[0].json
    assert body["size"] == "1024x1536"
    assert body["quality"] == "low" and body["style"] == "vivid"
    assert "delay" not in body  # Kiln's own params stay home
    # No field for these in the Images API: dropped.
    assert "seed" not in body and "negative_prompt" not in body


@pytest.mark.parametrize(
    ("model", "width", "height", "size"),
    [
        # The nearest aspect ratio the model accepts, then the nearest area.
        ("dall-e-3", 768, 512, "1792x1024"),
        ("dall-e-3", 512, 768, "1024x1792"),
        ("dall-e-3", 600, 640, "1024x1024"),
        ("dall-e-2", 768, 512, "512x512"),
        ("dall-e-2", 200, 240, "256x256"),
        ("dall-e-2", 2048, 1800, "1024x1024"),
        ("gpt-image-1", 768, 512, "1536x1024"),
        ("gpt-image-1", 900, 1600, "1024x1536"),
        ("gpt-image-1", 2048, 2048, "1024x1024"),
        ("gpt-image-1-mini", 1920, 1080, "1536x1024"),
    ],
)
async def test_a_size_the_model_does_not_take_becomes_the_nearest_it_does(
    fake, provider, model, width, height, size
):
    [output] = await generate(provider, request(model=model, width=width, height=height))
    assert fake.requests[0].json["size"] == size
    assert image_of(output).size == tuple(int(v) for v in size.split("x"))


async def test_an_edit_is_sized_like_a_generation(fake, provider):
    source = png(48, 32, (1, 2, 3))
    req = request(width=768, height=512, input_image=source, input_image_type="image/png")
    [output] = await generate(provider, req)
    assert fake.requests[0].fields["size"] == "1536x1024"
    assert image_of(output).size == (1536, 1024)


async def test_the_routes_sizes_replace_what_the_adapter_knows(fake, provider):
    sizes = ("512x512", "768x512", "512x768")
    await generate(provider, request(model="my-sdxl", width=700, height=480, sizes=sizes))
    assert fake.requests[0].json["size"] == "768x512"
    await generate(provider, request(model="dall-e-2", width=300, height=300, sizes=("512x512",)))
    assert fake.requests[1].json["size"] == "512x512"


async def test_a_model_with_no_known_sizes_gets_the_size_as_asked(fake, provider):
    [output] = await generate(provider, request(model="my-sdxl", width=700, height=480))
    assert fake.requests[0].json["size"] == "700x480"
    assert image_of(output).size == (700, 480)


async def test_the_fake_refuses_a_size_the_model_does_not_list(fake, provider):
    error = await failure(provider, request(model="dall-e-3", params={"size": "768x512"}))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_REJECTED", False, 400)
    assert "Invalid value: '768x512'" in error.message


async def test_organization_header(fake, client, sink):
    provider = make(fake, client, sink, organization="org-kiln")
    await generate(provider, request())
    assert fake.requests[0].headers["openai-organization"] == "org-kiln"


async def test_image_to_image_uses_multipart_edits(fake, provider):
    source = png(40, 40, (1, 2, 3))
    outputs = await generate(
        provider,
        request(
            num_outputs=2,
            width=1024,
            height=1024,
            input_image=source,
            input_image_type="image/png",
            params={"quality": "high", "input_fidelity": "high"},
        ),
    )
    assert len(outputs) == 2
    assert all(image_of(o).size == (1024, 1024) for o in outputs)
    [sent] = fake.requests
    assert sent.path == "/v1/images/edits"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.fields == {
        "model": "gpt-image-1",
        "prompt": "a copper lantern by the river",
        "n": "2",
        "size": "1024x1024",
        "quality": "high",
        "input_fidelity": "high",
    }
    filename, content_type, data = sent.files["image"]
    assert (filename, content_type) == ("image.png", "image/png")
    assert data == source


# -- text -------------------------------------------------------------------------------------


async def test_text_uses_chat_completions(fake, provider, sink):
    outputs = await generate(
        provider,
        request(
            GenerationKind.TEXT,
            model="gpt-4o-mini",
            num_outputs=2,
            seed=7,
            params={"system": "Be brief.", "temperature": 0.2},
        ),
    )
    assert [o.text for o in outputs] == [
        "a copper lantern by the river #0",
        "a copper lantern by the river #1",
    ]
    for output in outputs:
        assert output.content_type == "text/plain"
        assert output.data == (output.text or "").encode()
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a copper lantern by the river"},
        ],
        "n": 2,
        "seed": 7,
        "temperature": 0.2,
    }
    assert_key_kept_secret(sink, API_KEY)


async def test_text_without_system_prompt(fake, provider):
    await generate(provider, request(GenerationKind.TEXT, model="llama3"))
    assert fake.requests[0].json["messages"] == [
        {"role": "user", "content": "a copper lantern by the river"}
    ]


async def test_chat_content_filter_is_content_rejected(fake, provider):
    fake.next(
        Scripted(
            200,
            {
                "choices": [
                    {"index": 0, "message": {"content": None}, "finish_reason": "content_filter"}
                ]
            },
        )
    )
    error = await failure(provider, request(GenerationKind.TEXT, model="gpt-4o"))
    assert (error.code, error.retryable) == ("CONTENT_REJECTED", False)


async def test_video_is_not_supported(fake, provider):
    error = await failure(provider, request(GenerationKind.VIDEO))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert fake.requests == []


# -- failures ---------------------------------------------------------------------------------


async def test_429_is_retryable_with_retry_after(fake, provider, sink):
    fake.next(
        Scripted(
            429,
            {
                "error": {
                    "message": "Rate limit reached for images per minute.",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            headers={"retry-after": "7"},
        )
    )
    error = await failure(provider, request())
    assert error.code == "PROVIDER_RATE_LIMITED"
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert error.status_code == 429
    [record] = sink.records
    assert not record.ok and record.status_code == 429
    assert record.error and record.error.startswith("PROVIDER_RATE_LIMITED")


async def test_insufficient_quota_is_not_retryable(fake, provider):
    fake.next(
        error(429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota")
    )
    error_ = await failure(provider, request())
    assert (error_.code, error_.retryable) == ("PROVIDER_REJECTED", False)


async def test_500_is_retryable(fake, provider):
    fake.next(error(500, "The server had an error processing your request.", "server_error"))
    error_ = await failure(provider, request())
    assert error_.code == "PROVIDER_UNAVAILABLE"
    assert error_.retryable is True
    assert error_.status_code == 500


async def test_timeout_is_retryable(fake, provider, sink):
    fake.next(Scripted(200, {"created": 1, "data": []}, delay=1.5))
    error_ = await failure(provider, request(timeout=0.2))
    assert error_.code == "PROVIDER_TIMEOUT"
    assert error_.retryable is True
    [record] = sink.records
    assert not record.ok and record.status_code is None


async def test_malformed_json_is_a_bad_response(fake, provider, sink):
    fake.next(Scripted(200, text="<html>upstream connect error</html>"))
    error_ = await failure(provider, request())
    assert error_.code == "PROVIDER_BAD_RESPONSE"
    [record] = sink.records
    assert not record.ok and record.error and "PROVIDER_BAD_RESPONSE" in record.error


async def test_answer_without_images_is_a_bad_response(fake, provider):
    fake.next(Scripted(200, {"created": 1, "data": [{"revised_prompt": "x"}]}))
    assert (await failure(provider, request())).code == "PROVIDER_BAD_RESPONSE"


async def test_invalid_base64_is_a_bad_response(fake, provider):
    fake.next(Scripted(200, {"created": 1, "data": [{"b64_json": "not base64!!"}]}))
    assert (await failure(provider, request())).code == "PROVIDER_BAD_RESPONSE"


async def test_401_is_an_auth_error_and_never_shows_the_key(fake, client, sink):
    wrong_key = "sk-wrong-9876543210zyxwvutsrqponmlkjihgfedcba"
    provider = make(fake, client, sink, api_key=wrong_key)
    error_ = await failure(provider, request())
    assert error_.code == "PROVIDER_AUTH"
    assert error_.retryable is False
    assert error_.status_code == 401
    # The fake quotes the key it was given, as a careless compatible server would.
    assert wrong_key in fake.requests[0].headers["authorization"]
    assert wrong_key not in error_.message
    [record] = sink.records
    assert wrong_key not in repr(record)
    assert not record.ok and record.status_code == 401


@pytest.mark.parametrize("status", [400, 422])
async def test_other_client_errors_are_not_retryable(fake, provider, status):
    fake.next(error(status, "Invalid value for 'size'.", "invalid_request_error", "invalid_value"))
    error_ = await failure(provider, request())
    assert error_.code == "PROVIDER_REJECTED"
    assert error_.retryable is False
    assert error_.status_code == status
    assert "Invalid value for 'size'" in error_.message


async def test_gpt_image_refuses_response_format_when_a_route_forces_it(fake, provider):
    error_ = await failure(provider, request(params={"response_format": "b64_json"}))
    assert (error_.code, error_.retryable) == ("PROVIDER_REJECTED", False)
    assert "response_format" in error_.message


@pytest.mark.parametrize(
    ("type_", "code", "message"),
    [
        (
            "image_generation_user_error",
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
        ),
        (
            "image_generation_user_error",
            "moderation_blocked",
            "Your request was rejected by the safety system.",
        ),
        (
            "invalid_request_error",
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
        ),
    ],
)
async def test_content_policy_is_content_rejected(fake, provider, sink, type_, code, message):
    fake.next(error(400, message, type_, code))
    error_ = await failure(provider, request())
    assert error_.code == "CONTENT_REJECTED"
    assert error_.retryable is False
    assert error_.status_code == 400
    assert_key_kept_secret(sink, API_KEY, error_)


async def test_content_policy_on_edits(fake, provider):
    fake.next(
        error(
            400,
            "Your request was rejected by the safety system.",
            "image_generation_user_error",
            "moderation_blocked",
        )
    )
    error_ = await failure(provider, request(input_image=png(16, 16)))
    assert error_.code == "CONTENT_REJECTED"
    assert fake.requests[0].path == "/v1/images/edits"


async def test_image_user_error_that_is_not_moderation_is_rejected_not_content(fake, provider):
    fake.next(
        error(
            400,
            "Invalid mask image format - mask size does not match image size",
            "image_generation_user_error",
            "invalid_mask_image_format",
        )
    )
    error_ = await failure(provider, request(input_image=png(16, 16)))
    assert (error_.code, error_.retryable) == ("PROVIDER_REJECTED", False)


async def test_key_never_reaches_the_call_log(fake, provider, sink):
    await generate(provider, request())
    await generate(provider, request(GenerationKind.TEXT, model="gpt-4o-mini"))
    await generate(provider, request(input_image=png(16, 16)))
    fake.next(error(500, f"echo {API_KEY}", "server_error"))
    error_ = await failure(provider, request())
    assert len(sink.records) == 4
    assert_key_kept_secret(sink, API_KEY, error_)
    for sent in fake.requests:
        assert sent.query == ""


async def test_poll_cancel_and_webhooks(provider):
    with pytest.raises(ProviderError) as polled:
        await provider.poll(request(), "job-1")
    assert polled.value.retryable is False
    assert await provider.cancel(request(), "job-1") is None
    with pytest.raises(ProviderError) as hooked:
        provider.parse_webhook({}, b"{}")
    assert hooked.value.code == "WEBHOOK_REJECTED"
