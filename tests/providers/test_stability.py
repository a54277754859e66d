"""The Stability adapter against a fake Stability v2beta API on a real local port:
multipart submissions, synchronous images, asynchronous video and upscale jobs polled to the
end, content moderation, and the failures the routing layer must tell apart."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from models.generation import GenerationKind
from providers.base import Finished, Pending, ProviderError, ProviderRequest
from providers.http import CallRecord, ProviderHTTP
from providers.stability import StabilityProvider
from tests.support.fakes import served
from tests.support.fakes.stability import VIDEO_BYTES, FakeStability, png_bytes
from tests.support.providers import Progress, Sink, assert_logged_without

KEY = "sk-FAKEstabilityKEY0123456789abcdefSECRET"
INPUT_PNG = png_bytes(96, 64, seed=3)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeStability]:
    with served(FakeStability(KEY)) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeStability) -> FakeStability:
    fake_server.reset()
    return fake_server


@pytest.fixture
def http(client: httpx.AsyncClient, sink: Sink) -> Iterator[ProviderHTTP]:
    yield ProviderHTTP("stability", client, sink)
    assert_logged_without(sink, "stability", KEY)  # the call log never keeps the secret


@pytest.fixture
def records(sink: Sink) -> list[CallRecord]:
    return sink.records


@pytest.fixture
def provider(fake: FakeStability, http: ProviderHTTP) -> StabilityProvider:
    return StabilityProvider(http, KEY, base_url=fake.base_url)


def request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "kind": GenerationKind.IMAGE,
        "model": "stable-image/generate/core",
        "prompt": "a copper lantern by the river",
        "timeout": 5.0,
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


def video_request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "kind": GenerationKind.VIDEO,
        "model": "image-to-video",
        "input_image": INPUT_PNG,
        "input_image_type": "image/png",
        "seed": 9,
        "params": {"cfg_scale": 1.8, "motion_bucket_id": 127},
    }
    fields.update(overrides)
    return request(**fields)


async def failure(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert KEY not in caught.value.message
    return caught.value


def open_image(data: bytes | None) -> Image.Image:
    image = Image.open(io.BytesIO(data or b""))
    image.load()
    return image


# -- synchronous images ----------------------------------------------------------------------


async def test_a_synchronous_image_is_finished_with_its_bytes(provider, fake):
    progress = Progress()
    req = request(
        negative_prompt="blurry",
        width=1600,
        height=900,
        seed=42,
        params={"output_format": "png", "style_preset": "photographic"},
    )
    result = await provider.start(req, progress)

    assert isinstance(result, Finished)
    [output] = result.outputs
    assert output.content_type == "image/png"
    image = open_image(output.data)
    assert image.format == "PNG"
    assert (output.width, output.height) == image.size == (64, 36)  # 16:9
    assert output.url is None
    assert progress.calls == [(0.0, "generating"), (1.0, "done")]

    [call] = fake.requests
    assert (call.method, call.path) == ("POST", "/v2beta/stable-image/generate/core")
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["accept"] == "image/*"
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert call.fields == {
        "prompt": "a copper lantern by the river",
        "negative_prompt": "blurry",
        "seed": "42",
        "aspect_ratio": "16:9",
        "output_format": "png",
        "style_preset": "photographic",
    }
    assert call.files == {}


async def test_accept_json_reads_the_base64_image(provider, fake):
    req = request(params={"accept": "application/json", "output_format": "webp"})
    result = await provider.start(req, Progress())

    assert isinstance(result, Finished)
    [output] = result.outputs
    assert output.content_type == "image/webp"
    assert open_image(output.data).format == "WEBP"
    [call] = fake.requests
    assert call.headers["accept"] == "application/json"
    assert "accept" not in call.fields  # an adapter setting, not a Stability field
    assert call.fields["output_format"] == "webp"


@pytest.mark.parametrize(
    ("model", "path", "model_field"),
    [
        ("sd3", "/v2beta/stable-image/generate/sd3", None),
        ("sd3.5-large-turbo", "/v2beta/stable-image/generate/sd3", "sd3.5-large-turbo"),
        ("ultra", "/v2beta/stable-image/generate/ultra", None),
        ("v2beta/stable-image/generate/ultra", "/v2beta/stable-image/generate/ultra", None),
    ],
)
async def test_the_route_model_names_the_endpoint(provider, fake, model, path, model_field):
    result = await provider.start(request(model=model), Progress())
    assert isinstance(result, Finished)
    [call] = fake.requests
    assert call.path == path
    assert call.fields.get("model") == model_field


async def test_image_to_image_uploads_the_image_with_mode_and_strength(provider, fake):
    req = request(
        model="sd3.5-medium",
        input_image=INPUT_PNG,
        input_image_type="image/png",
        strength=0.6,
        width=1024,
        height=1024,
    )
    result = await provider.start(req, Progress())

    assert isinstance(result, Finished)
    assert open_image(result.outputs[0].data).size == (96, 64)
    [call] = fake.requests
    assert call.fields == {
        "prompt": "a copper lantern by the river",
        "model": "sd3.5-medium",
        "mode": "image-to-image",
        "strength": "0.6",
    }  # no aspect_ratio: the input image decides
    [image] = call.files.values()
    assert (image.filename, image.content_type, image.data) == ("image.png", "image/png", INPUT_PNG)


async def test_several_outputs_are_several_calls_with_successive_seeds(provider, fake):
    progress = Progress()
    result = await provider.start(request(num_outputs=3, seed=10), progress)

    assert isinstance(result, Finished)
    assert len(result.outputs) == 3
    assert [c.fields["seed"] for c in fake.requests] == ["10", "11", "12"]
    assert len({o.data for o in result.outputs}) == 3
    assert [f for f, _ in progress.calls] == [0.0, 1 / 3, 2 / 3, 1.0]


async def test_a_moderated_prompt_is_content_rejected(provider, fake):
    error = await failure(provider.start(request(prompt="something forbidden"), Progress()))
    assert (error.code, error.retryable, error.status_code) == ("CONTENT_REJECTED", False, 403)


@pytest.mark.parametrize("accept", ["image/*", "application/json"])
async def test_a_filtered_result_is_content_rejected(provider, fake, accept):
    req = request(prompt="a filtered scene", params={"accept": accept})
    error = await failure(provider.start(req, Progress()))
    assert (error.code, error.retryable) == ("CONTENT_REJECTED", False)


async def test_a_plain_403_is_an_auth_error_not_moderation(provider, fake):
    body = orjson.dumps({"id": "e1", "name": "forbidden", "errors": ["key lacks access"]})
    fake.inject("POST", "/v2beta/stable-image/generate/core", status=403, body=body)
    error = await failure(provider.start(request(), Progress()))
    assert (error.code, error.retryable) == ("PROVIDER_AUTH", False)


# -- asynchronous jobs -----------------------------------------------------------------------


async def test_image_to_video_is_submitted_then_polled_until_the_video_arrives(provider, fake):
    req = video_request()
    started = await provider.start(req, Progress())

    assert isinstance(started, Pending)
    assert len(started.job_id) == 64
    assert started.poll_after == 10.0
    [submit] = fake.requests
    assert (submit.method, submit.path) == ("POST", "/v2beta/image-to-video")
    assert submit.headers["authorization"] == f"Bearer {KEY}"
    assert submit.fields == {"seed": "9", "cfg_scale": "1.8", "motion_bucket_id": "127"}
    assert submit.files["image"].data == INPUT_PNG

    first = await provider.poll(req, started.job_id)
    second = await provider.poll(req, started.job_id)
    done = await provider.poll(req, started.job_id)

    assert isinstance(first, Pending) and isinstance(second, Pending)
    assert first.job_id == second.job_id == started.job_id
    assert isinstance(done, Finished)
    [video] = done.outputs
    assert (video.content_type, video.data) == ("video/mp4", VIDEO_BYTES)
    polls = fake.calls("GET")
    assert [p.path for p in polls] == [f"/v2beta/image-to-video/result/{started.job_id}"] * 3
    assert all(p.headers["accept"] == "video/*" for p in polls)
    assert all(p.headers["authorization"] == f"Bearer {KEY}" for p in polls)


async def test_a_video_result_can_be_read_as_base64_json(provider, fake):
    fake.in_progress_polls = 0
    req = video_request(params={"accept": "application/json"})
    started = await provider.start(req, Progress())
    done = await provider.poll(req, started.job_id)
    assert isinstance(done, Finished)
    assert done.outputs[0].data == VIDEO_BYTES
    assert fake.calls("GET")[0].headers["accept"] == "application/json"


async def test_creative_upscale_is_polled_through_the_generic_results_endpoint(provider, fake):
    req = request(
        model="stable-image/upscale/creative",
        input_image=INPUT_PNG,
        input_image_type="image/png",
        params={"creativity": 0.3},
    )
    started = await provider.start(req, Progress())
    assert isinstance(started, Pending)
    assert started.poll_after == 5.0
    assert fake.requests[0].fields == {
        "prompt": "a copper lantern by the river",
        "creativity": "0.3",
    }

    result = started
    while isinstance(result, Pending):
        result = await provider.poll(req, started.job_id)
    assert isinstance(result, Finished)
    assert open_image(result.outputs[0].data).size == (128, 128)
    assert {p.path for p in fake.calls("GET")} == {f"/v2beta/results/{started.job_id}"}
    assert {p.headers["accept"] for p in fake.calls("GET")} == {"image/*"}


async def test_video_without_an_input_image_is_refused_without_a_call(provider, fake):
    error = await failure(provider.start(video_request(input_image=None), Progress()))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert fake.requests == []


async def test_an_async_endpoint_refuses_several_outputs(provider, fake):
    error = await failure(provider.start(video_request(num_outputs=2), Progress()))
    assert error.code == "PROVIDER_REJECTED"
    assert fake.requests == []


async def test_an_unknown_or_expired_result_id_is_refused(provider, fake):
    error = await failure(provider.poll(video_request(), "0" * 64))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_REJECTED", False, 404)


async def test_cancel_is_a_documented_no_op(provider, fake):
    req = video_request()
    started = await provider.start(req, Progress())
    await provider.cancel(request(), started.job_id)
    assert len(fake.requests) == 1  # nothing sent: Stability has no cancel endpoint


def test_stability_sends_no_webhooks(provider):
    with pytest.raises(ProviderError) as caught:
        provider.parse_webhook({"webhook-id": "x"}, b"{}")
    assert (caught.value.code, caught.value.retryable) == ("WEBHOOK_REJECTED", False)


# -- HTTP failures ---------------------------------------------------------------------------


async def test_429_is_rate_limited_and_retryable_with_retry_after(provider, fake):
    body = orjson.dumps({"id": "e2", "name": "rate_limit_exceeded", "errors": ["slow down"]})
    fake.inject(
        "POST", "/v2beta/image-to-video", status=429, body=body, headers={"Retry-After": "12"}
    )
    error = await failure(provider.start(video_request(), Progress()))
    assert (error.code, error.retryable, error.retry_after) == ("PROVIDER_RATE_LIMITED", True, 12)


async def test_500_while_polling_is_retryable_and_the_next_poll_works(provider, fake):
    req = video_request()
    started = await provider.start(req, Progress())
    body = orjson.dumps({"id": "e3", "name": "internal_error", "errors": ["try again"]})
    fake.inject("GET", f"/v2beta/image-to-video/result/{started.job_id}", status=500, body=body)
    error = await failure(provider.poll(req, started.job_id))
    assert (error.code, error.retryable) == ("PROVIDER_UNAVAILABLE", True)
    assert isinstance(await provider.poll(req, started.job_id), Pending)


async def test_a_slow_answer_is_a_provider_timeout(provider, fake):
    fake.inject("POST", "/v2beta/stable-image/generate/core", delay=1.0)
    error = await failure(provider.start(request(timeout=0.2), Progress()))
    assert (error.code, error.retryable) == ("PROVIDER_TIMEOUT", True)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<html>502 Bad Gateway</html>", "application/json"),
        (b'{"status": "ok"}', "application/json"),
        (b'{"image": "###not base64###"}', "application/json"),
        (b"<html>oops</html>", "text/html"),
        (b"", "image/png"),
    ],
)
async def test_a_malformed_answer_is_a_bad_response(provider, fake, body, content_type):
    fake.inject("POST", "/v2beta/stable-image/generate/core", body=body, content_type=content_type)
    error = await failure(provider.start(request(), Progress()))
    assert error.code == "PROVIDER_BAD_RESPONSE"


async def test_a_wrong_key_is_an_auth_error_that_is_not_retried(fake, http):
    wrong = "sk-WRONGkey9876543210"
    provider = StabilityProvider(http, wrong, base_url=fake.base_url)
    error = await failure(provider.start(request(), Progress()))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_AUTH", False, 401)
    assert wrong not in error.message


async def test_an_echoed_key_is_scrubbed_from_error_messages(provider, fake):
    body = orjson.dumps({"id": "e4", "name": "bad_request", "errors": [f"bad key {KEY}"]})
    fake.inject("POST", "/v2beta/stable-image/generate/core", status=400, body=body)
    error = await failure(provider.start(request(), Progress()))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert "[redacted]" in error.message


@pytest.mark.parametrize(
    "model", ["", "Stable Image!", "../../v1/user/account", "stable-image/../../v1/user"]
)
async def test_a_route_model_that_names_no_endpoint_is_refused(provider, fake, model):
    error = await failure(provider.start(request(model=model), Progress()))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert fake.requests == []


async def test_every_call_is_reported_to_the_sink_without_the_key(provider, fake, records):
    req = video_request()
    started = await provider.start(req, Progress())
    for _ in range(3):
        await provider.poll(req, started.job_id)
    assert [(r.method, r.status_code, r.ok) for r in records] == [
        ("POST", 200, True),
        ("GET", 202, True),
        ("GET", 202, True),
        ("GET", 200, True),
    ]
    assert all(r.model == "image-to-video" for r in records)
    assert records[0].url.endswith("/v2beta/image-to-video")
