"""The Gemini adapter against a fake Gemini API speaking its real wire format."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from models.generation import GenerationKind
from providers.base import Finished, ProviderError, ProviderRequest
from providers.gemini import GeminiProvider
from providers.http import ProviderHTTP
from tests.support.fakes import served
from tests.support.fakes.gemini import API_KEY, FakeGemini, google_error
from tests.support.fakes.scripted import Scripted, png
from tests.support.providers import (
    Progress,
    Sink,
    assert_key_kept_secret,
    failure,
    generate,
    image_of,
)

IMAGE_MODEL = "gemini-2.5-flash-image"
TEXT_MODEL = "gemini-2.5-flash"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with served(FakeGemini()) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeGemini) -> None:
    fake.reset()


def make(fake: FakeGemini, client: httpx.AsyncClient, sink: Sink, **kwargs: Any) -> GeminiProvider:
    kwargs.setdefault("api_key", API_KEY)
    http = ProviderHTTP("gemini", client, sink)
    return GeminiProvider(http, base_url=f"{fake.base_url}/v1beta", **kwargs)


@pytest.fixture
def provider(fake: FakeGemini, client: httpx.AsyncClient, sink: Sink) -> GeminiProvider:
    return make(fake, client, sink)


def request(kind: GenerationKind = GenerationKind.IMAGE, **overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "model": IMAGE_MODEL if kind != GenerationKind.TEXT else TEXT_MODEL,
        "prompt": "a copper lantern by the river",
        "timeout": 10.0,
    }
    fields.update(overrides)
    return ProviderRequest(kind=kind, **fields)


def answer(*candidates: Any, **extra: Any) -> Any:
    return {"candidates": list(candidates), **extra}


def image_candidate(finish: str = "STOP") -> Any:
    data = base64.b64encode(png(8, 8)).decode()
    return {
        "content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": data}}]},
        "finishReason": finish,
    }


# -- images -----------------------------------------------------------------------------------


async def test_image_is_generated_from_inline_data(fake, provider, sink):
    progress = Progress()
    result = await provider.start(request(width=1600, height=900, seed=5), progress)
    assert isinstance(result, Finished)
    [output] = result.outputs
    assert output.content_type == "image/png"
    assert output.url is None
    image = image_of(output)
    assert image.format == "PNG"
    assert image.size == (64, 36)  # the fake draws 16:9 at 64x36
    assert (output.width, output.height) == (64, 36)
    assert progress.calls[-1] == (1.0, "done")

    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.path == f"/v1beta/models/{IMAGE_MODEL}:generateContent"
    assert sent.query == ""  # never ?key=
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert "authorization" not in sent.headers
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "a copper lantern by the river"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9"},
            "seed": 5,
        },
    }
    [record] = sink.records
    assert record.provider == "gemini" and record.model == IMAGE_MODEL
    assert record.ok and record.status_code == 200
    assert record.url.endswith(f"/v1beta/models/{IMAGE_MODEL}:generateContent")
    assert_key_kept_secret(sink, API_KEY)


@pytest.mark.parametrize(
    ("width", "height", "ratio"),
    [(512, 512, "1:1"), (768, 1024, "3:4"), (1080, 1920, "9:16"), (2560, 1080, "21:9")],
)
async def test_size_becomes_the_nearest_aspect_ratio(fake, provider, width, height, ratio):
    await generate(provider, request(width=width, height=height))
    assert fake.requests[0].json["generationConfig"]["imageConfig"] == {"aspectRatio": ratio}


async def test_route_params_set_image_config_and_generation_config(fake, provider):
    params = {
        "aspect_ratio": "4:5",
        "image_size": "2K",
        "temperature": 0.4,
        "system": "Flat colours.",
        "delay": 3,
    }
    await generate(
        provider, request(model="gemini-3-pro-image-preview", width=10, height=10, params=params)
    )
    body = fake.requests[0].json
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "4:5", "imageSize": "2K"}
    assert body["generationConfig"]["temperature"] == 0.4
    assert body["systemInstruction"] == {"parts": [{"text": "Flat colours."}]}
    assert "delay" not in str(body)


async def test_snake_case_inline_data_is_accepted(fake, provider):
    fake.snake_case = True
    [output] = await generate(provider, request())
    assert image_of(output).size == (64, 64)


async def test_several_images_are_one_call_each(fake, provider):
    outputs = await generate(provider, request(num_outputs=3, seed=10))
    assert len(outputs) == 3
    assert all(image_of(o).format == "PNG" for o in outputs)
    assert len(fake.requests) == 3
    configs = [r.json["generationConfig"] for r in fake.requests]
    assert all("candidateCount" not in c for c in configs)  # image models refuse it
    assert sorted(c["seed"] for c in configs) == [10, 11, 12]


async def test_image_to_image_sends_inline_data(fake, provider):
    source = png(20, 10, (9, 9, 9))
    await generate(provider, request(input_image=source, input_image_type="image/png"))
    parts = fake.requests[0].json["contents"][0]["parts"]
    assert parts[0] == {"text": "a copper lantern by the river"}
    assert parts[1] == {
        "inline_data": {"mime_type": "image/png", "data": base64.b64encode(source).decode()}
    }
    assert base64.b64decode(parts[1]["inline_data"]["data"]) == source


async def test_thought_images_are_skipped(fake, provider):
    thought = base64.b64encode(png(4, 4)).decode()
    final = base64.b64encode(png(12, 12)).decode()
    fake.next(
        Scripted(
            200,
            answer(
                {
                    "content": {
                        "parts": [
                            {
                                "inlineData": {"mimeType": "image/png", "data": thought},
                                "thought": True,
                            },
                            {"inlineData": {"mimeType": "image/png", "data": final}},
                        ]
                    },
                    "finishReason": "STOP",
                }
            ),
        )
    )
    [output] = await generate(provider, request())
    assert image_of(output).size == (12, 12)


# -- text -------------------------------------------------------------------------------------


async def test_text_uses_candidate_count(fake, provider, sink):
    outputs = await generate(
        provider, request(GenerationKind.TEXT, num_outputs=2, params={"system": "Be brief."})
    )
    assert [o.text for o in outputs] == [
        "a copper lantern by the river #0",
        "a copper lantern by the river #1",
    ]
    for output in outputs:
        assert output.content_type == "text/plain"
        assert output.data == (output.text or "").encode()
    [sent] = fake.requests
    assert sent.path == f"/v1beta/models/{TEXT_MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "a copper lantern by the river"}]}],
        "generationConfig": {"candidateCount": 2},
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
    }
    assert_key_kept_secret(sink, API_KEY)


async def test_single_text_sends_no_generation_config(fake, provider):
    [output] = await generate(provider, request(GenerationKind.TEXT))
    assert output.text == "a copper lantern by the river #0"
    assert "generationConfig" not in fake.requests[0].json


async def test_text_is_topped_up_when_fewer_candidates_come_back(fake, provider):
    one = answer({"content": {"parts": [{"text": "only one"}]}, "finishReason": "STOP"})
    fake.next(Scripted(200, one))
    outputs = await generate(provider, request(GenerationKind.TEXT, num_outputs=2))
    assert [o.text for o in outputs] == ["only one", "a copper lantern by the river #0"]
    assert [r.json.get("generationConfig") for r in fake.requests] == [{"candidateCount": 2}, None]


async def test_video_is_not_supported(fake, provider):
    error = await failure(provider, request(GenerationKind.VIDEO))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert fake.requests == []


# -- safety -----------------------------------------------------------------------------------


async def test_blocked_prompt_is_content_rejected(fake, provider, sink):
    fake.next(
        Scripted(
            200,
            {
                "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                "modelVersion": IMAGE_MODEL,
            },
        )
    )
    error = await failure(provider, request())
    assert error.code == "CONTENT_REJECTED"
    assert error.retryable is False
    assert "PROHIBITED_CONTENT" in error.message
    [record] = sink.records
    assert not record.ok and record.error and record.error.startswith("CONTENT_REJECTED")


@pytest.mark.parametrize(
    "reason", ["SAFETY", "PROHIBITED_CONTENT", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"]
)
async def test_safety_finish_reason_is_content_rejected(fake, provider, reason):
    fake.next(Scripted(200, answer({"content": {"parts": []}, "finishReason": reason})))
    error = await failure(provider, request())
    assert (error.code, error.retryable) == ("CONTENT_REJECTED", False)
    assert reason in error.message


async def test_blocked_text_candidate_is_content_rejected(fake, provider):
    fake.next(Scripted(200, answer({"finishReason": "SAFETY", "index": 0})))
    error = await failure(provider, request(GenerationKind.TEXT))
    assert error.code == "CONTENT_REJECTED"


@pytest.mark.parametrize(
    "candidate",
    [
        {"content": {"parts": [{"text": "I can only describe it."}]}, "finishReason": "STOP"},
        {"finishReason": "NO_IMAGE"},
        {"content": {"parts": []}, "finishReason": "IMAGE_OTHER"},
    ],
)
async def test_no_usable_image_is_a_bad_response(fake, provider, candidate):
    fake.next(Scripted(200, answer(candidate)))
    error = await failure(provider, request())
    assert error.code == "PROVIDER_BAD_RESPONSE"


async def test_no_candidates_is_a_bad_response(fake, provider):
    fake.next(Scripted(200, {"usageMetadata": {"promptTokenCount": 3}}))
    assert (await failure(provider, request(GenerationKind.TEXT))).code == "PROVIDER_BAD_RESPONSE"


# -- failures ---------------------------------------------------------------------------------


async def test_429_with_retry_after_header(fake, provider):
    fake.next(
        Scripted(
            429,
            google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted."),
            headers={"retry-after": "12"},
        )
    )
    error = await failure(provider, request())
    assert error.code == "PROVIDER_RATE_LIMITED"
    assert error.retryable is True
    assert error.retry_after == 12.0


async def test_429_takes_retry_delay_from_retry_info(fake, provider):
    fake.next(
        Scripted(
            429,
            google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "27.5s"},
                ],
            ),
        )
    )
    error = await failure(provider, request())
    assert error.code == "PROVIDER_RATE_LIMITED"
    assert error.retryable is True
    assert error.retry_after == 27.5


async def test_500_is_retryable(fake, provider):
    fake.next(Scripted(500, google_error(500, "INTERNAL", "An internal error has occurred.")))
    error = await failure(provider, request())
    assert error.code == "PROVIDER_UNAVAILABLE"
    assert error.retryable is True


async def test_503_overloaded_is_retryable(fake, provider):
    fake.next(Scripted(503, google_error(503, "UNAVAILABLE", "The model is overloaded.")))
    error = await failure(provider, request(GenerationKind.TEXT))
    assert (error.code, error.retryable) == ("PROVIDER_UNAVAILABLE", True)


async def test_timeout_is_retryable(fake, provider, sink):
    fake.next(Scripted(200, answer(image_candidate()), delay=1.5))
    error = await failure(provider, request(timeout=0.2))
    assert error.code == "PROVIDER_TIMEOUT"
    assert error.retryable is True
    [record] = sink.records
    assert not record.ok


async def test_one_failed_image_call_fails_the_request(fake, provider):
    fake.next(Scripted(500, google_error(500, "INTERNAL", "An internal error has occurred.")))
    error = await failure(provider, request(num_outputs=2))
    assert error.code == "PROVIDER_UNAVAILABLE"


async def test_malformed_json_is_a_bad_response(fake, provider, sink):
    fake.next(Scripted(200, text="<html>502 Bad Gateway</html>"))
    error = await failure(provider, request())
    assert error.code == "PROVIDER_BAD_RESPONSE"
    [record] = sink.records
    assert not record.ok


async def test_invalid_base64_is_a_bad_response(fake, provider):
    fake.next(
        Scripted(
            200,
            answer(
                {
                    "content": {
                        "parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]
                    },
                    "finishReason": "STOP",
                }
            ),
        )
    )
    assert (await failure(provider, request())).code == "PROVIDER_BAD_RESPONSE"


async def test_invalid_key_is_an_auth_error(fake, client, sink):
    wrong_key = "AIzaSy-wrong-zyxwvutsrqponmlkjihgfedcba98"
    provider = make(fake, client, sink, api_key=wrong_key)
    error = await failure(provider, request())
    # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    assert error.code == "PROVIDER_AUTH"
    assert error.retryable is False
    assert error.status_code == 400
    assert wrong_key not in error.message
    assert fake.requests[0].headers["x-goog-api-key"] == wrong_key
    [record] = sink.records
    assert wrong_key not in repr(record) and "?" not in record.url


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_auth_errors(fake, provider, status):
    fake.next(Scripted(status, google_error(status, "PERMISSION_DENIED", "Permission denied.")))
    error = await failure(provider, request())
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_AUTH", False, status)


@pytest.mark.parametrize("status", [400, 422])
async def test_other_client_errors_are_not_retryable(fake, provider, status):
    fake.next(
        Scripted(
            status,
            google_error(status, "INVALID_ARGUMENT", "Unsupported aspect ratio: 7:3."),
        )
    )
    error = await failure(provider, request())
    assert error.code == "PROVIDER_REJECTED"
    assert error.retryable is False
    assert error.status_code == status
    assert "Unsupported aspect ratio" in error.message


async def test_candidate_count_would_be_refused_by_image_models(fake, provider):
    """The fake refuses candidateCount > 1 for image models, as Gemini does; the adapter never
    sends it (see test_several_images_are_one_call_each), and the error maps cleanly."""
    fake.next(
        Scripted(
            400,
            google_error(
                400,
                "INVALID_ARGUMENT",
                f"Multiple candidates is not enabled for models/{IMAGE_MODEL}",
            ),
        )
    )
    error = await failure(provider, request())
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)


async def test_key_never_reaches_urls_logs_or_errors(fake, provider, sink):
    await generate(provider, request())
    await generate(provider, request(GenerationKind.TEXT))
    fake.next(Scripted(500, google_error(500, "INTERNAL", f"bad key {API_KEY}")))
    error = await failure(provider, request())
    assert len(sink.records) == 3
    assert_key_kept_secret(sink, API_KEY, error)
    for sent in fake.requests:
        assert sent.query == ""
        assert API_KEY not in sent.path


async def test_poll_cancel_and_webhooks(provider):
    with pytest.raises(ProviderError) as polled:
        await provider.poll(request(), "job-1")
    assert polled.value.retryable is False
    assert await provider.cancel(request(), "job-1") is None
    with pytest.raises(ProviderError) as hooked:
        provider.parse_webhook({}, b"{}")
    assert hooked.value.code == "WEBHOOK_REJECTED"
