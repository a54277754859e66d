"""The Replicate adapter against a fake Replicate API on a real local port: the exact wire
format of create / read / cancel, the lifecycle of a prediction, every failure the routing
layer must tell apart, and Standard Webhooks signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

import providers.replicate as replicate_module
from models.generation import GenerationKind
from providers.base import Finished, Pending, ProviderError, ProviderRequest, WebhookUpdate
from providers.http import CallRecord, ProviderHTTP
from providers.replicate import ReplicateProvider
from tests.support.fakes import served
from tests.support.fakes.replicate import (
    NSFW_ERROR,
    SENSITIVE_ERROR,
    SIGNING_SECRET,
    FakeReplicate,
    Outcome,
)
from tests.support.providers import Sink, assert_logged_without

TOKEN = "r8_FAKEtoken0123456789abcdefSECRET"
VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
WEBHOOK_URL = "https://kiln.example/webhooks/replicate?generation=g1"


async def no_progress(fraction: float, stage: str) -> None:
    return None


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeReplicate]:
    with served(FakeReplicate(TOKEN)) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeReplicate) -> FakeReplicate:
    fake_server.reset()
    return fake_server


@pytest.fixture
def http(client: httpx.AsyncClient, sink: Sink) -> Iterator[ProviderHTTP]:
    yield ProviderHTTP("replicate", client, sink)
    assert_logged_without(sink, "replicate", TOKEN)  # the call log never keeps the secret


@pytest.fixture
def records(sink: Sink) -> list[CallRecord]:
    return sink.records


@pytest.fixture
def provider(fake: FakeReplicate, http: ProviderHTTP) -> ReplicateProvider:
    return ReplicateProvider(http, TOKEN, base_url=fake.api_url, webhook_secret=SIGNING_SECRET)


def request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "kind": GenerationKind.IMAGE,
        "model": "black-forest-labs/flux-schnell",
        "prompt": "a copper lantern by the river",
        "timeout": 5.0,
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


async def run_to_end(provider: ReplicateProvider, req: ProviderRequest) -> list[Any]:
    """start, then poll until the result is no longer Pending; every result seen."""
    seen: list[Any] = [await provider.start(req, no_progress)]
    while isinstance(seen[-1], Pending):
        seen.append(await provider.poll(req, seen[-1].job_id))
        assert len(seen) < 10
    return seen


async def failure(awaitable: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    assert TOKEN not in caught.value.message
    return caught.value


# -- create: the wire format -----------------------------------------------------------------


async def test_official_model_is_created_through_the_models_endpoint(provider, fake):
    req = request(
        negative_prompt="blurry",
        width=96,
        height=64,
        seed=42,
        params={"output_format": "png", "num_inference_steps": 4},
        webhook_url=WEBHOOK_URL,
    )
    result = await provider.start(req, no_progress)

    [call] = fake.requests
    assert (call.method, call.path) == (
        "POST",
        "/v1/models/black-forest-labs/flux-schnell/predictions",
    )
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"] == "application/json"
    assert "prefer" not in call.headers  # never the blocking sync mode
    assert call.json == {
        "input": {
            "prompt": "a copper lantern by the river",
            "negative_prompt": "blurry",
            "width": 96,
            "height": 64,
            "seed": 42,
            "output_format": "png",
            "num_inference_steps": 4,
        },
        "webhook": WEBHOOK_URL,
        "webhook_events_filter": ["completed"],
    }
    [created] = fake.predictions.values()
    assert result == Pending(job_id=created["id"], progress=None, stage="starting", poll_after=2.0)


async def test_pinned_version_is_created_through_predictions_with_its_version_id(provider, fake):
    result = await provider.start(
        request(model=f"stability-ai/sdxl:{VERSION}", num_outputs=2), no_progress
    )

    [call] = fake.requests
    assert (call.method, call.path) == ("POST", "/v1/predictions")
    assert call.json == {
        "version": VERSION,
        "input": {"prompt": "a copper lantern by the river", "num_outputs": 2},
    }  # no webhook fields when Kiln polls
    assert isinstance(result, Pending)


async def test_a_bare_version_id_is_accepted(provider, fake):
    await provider.start(request(model=VERSION), no_progress)
    assert fake.requests[0].path == "/v1/predictions"
    assert fake.requests[0].json["version"] == VERSION


async def test_image_to_image_sends_a_data_url_and_prompt_strength(provider, fake):
    picture = b"\x89PNG\r\n\x1a\nnot-really-a-png"
    await provider.start(
        request(input_image=picture, input_image_type="image/png", strength=0.35), no_progress
    )
    sent = fake.requests[0].json["input"]
    assert sent["image"] == "data:image/png;base64," + base64.b64encode(picture).decode()
    assert sent["prompt_strength"] == 0.35


async def test_route_params_override_the_generic_inputs(provider, fake):
    await provider.start(
        request(width=512, params={"width": 1024, "aspect_ratio": "16:9"}), no_progress
    )
    sent = fake.requests[0].json["input"]
    assert sent["width"] == 1024
    assert sent["aspect_ratio"] == "16:9"


@pytest.mark.parametrize("model", ["flux-schnell", "a/b/c", "owner/name:notaversion", ""])
async def test_a_malformed_route_model_is_refused_without_a_call(provider, fake, model):
    error = await failure(provider.start(request(model=model), no_progress))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert fake.requests == []


# -- the lifecycle ---------------------------------------------------------------------------


async def test_a_prediction_is_polled_from_starting_through_processing_to_finished(
    provider, fake, client
):
    req = request(width=48, height=32, num_outputs=2, seed=7)
    started, processing, finished = await run_to_end(provider, req)

    assert isinstance(started, Pending) and started.stage == "starting"
    assert isinstance(processing, Pending)
    assert processing.job_id == started.job_id
    assert processing.stage == "processing"
    assert processing.progress == 0.25  # the last "NN%" of the logs
    assert isinstance(finished, Finished)

    reads = fake.calls("GET")
    assert [r.path for r in reads] == [f"/v1/predictions/{started.job_id}"] * 2
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in reads)

    assert len(finished.outputs) == 2
    for index, output in enumerate(finished.outputs):
        assert output.content_type == "image/png"
        assert output.data is None
        assert output.url is not None
        server = fake.base_url
        assert output.url == f"{server}/files/{started.job_id}/out-{index}.png"
        downloaded = await client.get(output.url)
        assert downloaded.status_code == 200
        image = Image.open(io.BytesIO(downloaded.content))
        assert (image.format, image.size) == ("PNG", (48, 32))


async def test_a_single_url_output_is_one_output(provider, fake):
    fake.outcome = Outcome(output_as_string=True)
    *_, finished = await run_to_end(provider, request())
    assert isinstance(finished, Finished)
    [output] = finished.outputs
    assert output.url and output.url.endswith("/out-0.png")
    assert output.content_type == "image/png"


async def test_a_prediction_that_already_succeeded_at_creation_is_finished(provider, fake):
    fake.outcome = Outcome(polls=0)
    result = await provider.start(request(), no_progress)
    assert isinstance(result, Finished)
    assert len(result.outputs) == 1
    assert fake.calls("GET") == []


async def test_a_failed_prediction_is_a_non_retryable_provider_error(provider, fake):
    fake.outcome = Outcome(status="failed", error="CUDA out of memory.\nTraceback: secret stuff")
    req = request()
    started = await provider.start(req, no_progress)
    assert isinstance(started, Pending)
    assert isinstance(await provider.poll(req, started.job_id), Pending)

    error = await failure(provider.poll(req, started.job_id))
    assert (error.code, error.retryable) == ("PROVIDER_ERROR", False)
    assert "CUDA out of memory." in error.message
    assert "Traceback" not in error.message


@pytest.mark.parametrize("message", [NSFW_ERROR, SENSITIVE_ERROR])
async def test_a_content_flagged_prediction_is_content_rejected(provider, fake, message):
    fake.outcome = Outcome(status="failed", error=message, polls=1)
    req = request()
    started = await provider.start(req, no_progress)
    error = await failure(provider.poll(req, started.job_id))
    assert (error.code, error.retryable) == ("CONTENT_REJECTED", False)


async def test_cancel_posts_to_the_cancel_endpoint_and_the_prediction_ends_canceled(provider, fake):
    req = request()
    started = await provider.start(req, no_progress)
    assert isinstance(started, Pending)

    await provider.cancel(request(), started.job_id)

    [cancel] = fake.calls("POST", f"/v1/predictions/{started.job_id}/cancel")
    assert cancel.headers["authorization"] == f"Bearer {TOKEN}"
    assert fake.predictions[started.job_id]["status"] == "canceled"
    error = await failure(provider.poll(req, started.job_id))
    assert (error.code, error.message, error.retryable) == ("PROVIDER_ERROR", "canceled", False)


# -- HTTP failures ---------------------------------------------------------------------------


def throttled(retry_after: str) -> dict[str, Any]:
    body = {
        "title": "Request was throttled",
        "detail": "Expected available in 7 seconds.",
        "status": 429,
    }
    return {
        "status": 429,
        "body": orjson.dumps(body),
        "headers": {"Retry-After": retry_after},
        "content_type": "application/problem+json",
    }


async def test_429_on_create_is_rate_limited_and_retryable_with_retry_after(provider, fake):
    fake.inject("POST", "/v1/models/black-forest-labs/flux-schnell/predictions", **throttled("7"))
    error = await failure(provider.start(request(), no_progress))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_RATE_LIMITED", True, 429)
    assert error.retry_after == 7.0
    assert fake.predictions == {}


CREATE_PATH = "/v1/models/black-forest-labs/flux-schnell/predictions"
THROTTLED_BODIES = {
    # The wording of Replicate's throttling answers (Django REST framework's), and the one
    # its rate-limit page shows: the wait is in the body, there is no Retry-After header.
    "expected": ("Request was throttled. Expected available in 12 seconds.", 12.0),
    "expected-one": ("Request was throttled. Expected available in 1 second.", 1.0),
    "resets": ("Request was throttled. Your rate limit resets in ~30s.", 30.0),
}


def throttled_in_body(detail: str) -> dict[str, Any]:
    return {"status": 429, "body": orjson.dumps({"detail": detail})}


@pytest.mark.parametrize("wording", THROTTLED_BODIES)
@pytest.mark.parametrize("call", ["create", "poll", "cancel"])
async def test_a_429_without_retry_after_takes_its_wait_from_the_body(
    provider, fake, call, wording
):
    detail, seconds = THROTTLED_BODIES[wording]
    req = request()
    if call == "create":
        fake.inject("POST", CREATE_PATH, **throttled_in_body(detail))
        error = await failure(provider.start(req, no_progress))
    else:
        started = await provider.start(req, no_progress)
        assert isinstance(started, Pending)
        if call == "poll":
            fake.inject("GET", f"/v1/predictions/{started.job_id}", **throttled_in_body(detail))
            error = await failure(provider.poll(req, started.job_id))
        else:
            path = f"/v1/predictions/{started.job_id}/cancel"
            fake.inject("POST", path, **throttled_in_body(detail))
            error = await failure(provider.cancel(req, started.job_id))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_RATE_LIMITED", True, 429)
    assert error.retry_after == seconds


async def test_the_retry_after_header_wins_over_the_body(provider, fake):
    fake.inject("POST", CREATE_PATH, **throttled("3"))  # its body says 7 seconds
    assert (await failure(provider.start(request(), no_progress))).retry_after == 3.0


async def test_a_throttled_fake_answers_as_replicate_documents(provider, fake):
    fake.throttle(1.5)
    error = await failure(provider.start(request(), no_progress))
    assert error.retry_after == 2.0  # whole seconds, rounded up
    assert fake.predictions == {}


async def test_500_is_retryable(provider, fake):
    req = request()
    started = await provider.start(req, no_progress)
    fake.inject(
        "GET",
        f"/v1/predictions/{started.job_id}",
        status=500,
        body=b"Internal Server Error",
        content_type="text/plain",
    )
    error = await failure(provider.poll(req, started.job_id))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_UNAVAILABLE", True, 500)
    # the next read works again
    assert isinstance(await provider.poll(req, started.job_id), Pending)


async def test_a_slow_answer_is_a_provider_timeout(provider, fake, records):
    fake.inject("POST", "/v1/models/black-forest-labs/flux-schnell/predictions", delay=1.0)
    error = await failure(provider.start(request(timeout=0.2), no_progress))
    assert (error.code, error.retryable) == ("PROVIDER_TIMEOUT", True)
    assert records[-1].status_code is None and not records[-1].ok


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"[1, 2]", b'{"status": "x"}'])
async def test_a_malformed_answer_is_a_bad_response(provider, fake, body):
    fake.inject(
        "POST", "/v1/models/black-forest-labs/flux-schnell/predictions", status=201, body=body
    )
    error = await failure(provider.start(request(), no_progress))
    assert error.code == "PROVIDER_BAD_RESPONSE"


async def test_a_wrong_token_is_an_auth_error_that_is_not_retried(fake, http):
    wrong = "r8_WRONGtoken9876543210"
    provider = ReplicateProvider(http, wrong, base_url=fake.api_url)
    error = await failure(provider.start(request(), no_progress))
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_AUTH", False, 401)
    assert wrong not in error.message
    assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"


async def test_an_echoed_token_is_scrubbed_from_error_messages(provider, fake):
    fake.inject(
        "POST",
        "/v1/models/black-forest-labs/flux-schnell/predictions",
        status=422,
        body=orjson.dumps({"detail": f"bad header Bearer {TOKEN}"}),
    )
    error = await failure(provider.start(request(), no_progress))
    assert (error.code, error.retryable) == ("PROVIDER_REJECTED", False)
    assert "[redacted]" in error.message


async def test_every_call_is_reported_to_the_sink_without_the_token(provider, fake, records):
    await run_to_end(provider, request())
    assert [(r.method, r.status_code, r.ok) for r in records] == [
        ("POST", 201, True),
        ("GET", 200, True),
        ("GET", 200, True),
    ]
    assert all(r.model == "black-forest-labs/flux-schnell" for r in records)
    assert records[0].url.endswith("/v1/models/black-forest-labs/flux-schnell/predictions")


# -- webhooks --------------------------------------------------------------------------------


def standard_webhooks_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """As the Standard Webhooks spec signs: HMAC-SHA256 keyed by the base64 part of the
    whsec_ secret, over "{id}.{timestamp}.{body}", base64, prefixed "v1,"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed(
    body: bytes,
    *,
    secret: str = SIGNING_SECRET,
    at: float | None = None,
    msg_id: str = "msg_2Lh9KRb0pzN4LePd3XiA0bMp8Bb",
) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": standard_webhooks_signature(secret, msg_id, timestamp, body),
    }


async def finished_prediction(provider: ReplicateProvider, fake: FakeReplicate) -> bytes:
    """The body Replicate would POST: the prediction object, as the fake ended it."""
    seen = await run_to_end(provider, request(webhook_url=WEBHOOK_URL))
    return orjson.dumps(fake.predictions[seen[0].job_id])


def test_the_test_signer_matches_the_standard_webhooks_reference_vector():
    assert (
        standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_the_reference_vector_verifies(provider, monkeypatch):
    monkeypatch.setattr(replicate_module.time, "time", lambda: 1614265330.0)
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    provider._webhook_key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    # The signature matches, so verification reaches the body -- which is no prediction.
    with pytest.raises(ProviderError, match="not a prediction"):
        provider.parse_webhook(headers, b'{"test": 2432232314}')


async def test_a_validly_signed_webhook_is_read_as_the_prediction_result(provider, fake):
    body = await finished_prediction(provider, fake)
    prediction = orjson.loads(body)

    update = provider.parse_webhook(signed(body), body)

    assert isinstance(update, WebhookUpdate)
    assert update.job_id == prediction["id"]
    assert isinstance(update.result, Finished)
    assert [o.url for o in update.result.outputs] == prediction["output"]


async def test_header_names_are_matched_case_insensitively(provider, fake):
    body = await finished_prediction(provider, fake)
    headers = {key.title(): value for key, value in signed(body).items()}
    assert isinstance(provider.parse_webhook(headers, body).result, Finished)


async def test_a_failed_prediction_webhook_carries_the_error(provider, fake):
    fake.outcome = Outcome(status="failed", error=NSFW_ERROR, polls=1)
    req = request()
    started = await provider.start(req, no_progress)
    await failure(provider.poll(req, started.job_id))
    body = orjson.dumps(fake.predictions[started.job_id])

    update = provider.parse_webhook(signed(body), body)

    assert update.job_id == started.job_id
    assert isinstance(update.result, ProviderError)
    assert update.result.code == "CONTENT_REJECTED"


async def test_a_start_webhook_is_pending(provider, fake):
    started = await provider.start(request(), no_progress)
    body = orjson.dumps(fake.predictions[started.job_id])
    update = provider.parse_webhook(signed(body), body)
    assert isinstance(update.result, Pending) and update.result.stage == "starting"


async def test_several_signatures_are_accepted_when_one_is_valid(provider, fake):
    body = await finished_prediction(provider, fake)
    headers = signed(body)
    other = "whsec_" + base64.b64encode(b"an old rotated signing key!!").decode()
    stale = standard_webhooks_signature(
        other, headers["webhook-id"], headers["webhook-timestamp"], body
    )
    headers["webhook-signature"] = f"{stale} v1a,c29tZSBlZDI1NTE5 {headers['webhook-signature']}"
    assert isinstance(provider.parse_webhook(headers, body).result, Finished)


def rejected(provider: ReplicateProvider, headers: dict[str, str], body: bytes) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        provider.parse_webhook(headers, body)
    assert (caught.value.code, caught.value.retryable) == ("WEBHOOK_REJECTED", False)
    return caught.value


async def test_a_tampered_body_is_rejected(provider, fake):
    body = await finished_prediction(provider, fake)
    headers = signed(body)
    rejected(provider, headers, body.replace(b'"succeeded"', b'"failed"'))


async def test_a_signature_made_with_another_secret_is_rejected(provider, fake):
    body = await finished_prediction(provider, fake)
    other = "whsec_" + base64.b64encode(b"somebody else's key 32 bytes!!!").decode()
    rejected(provider, signed(body, secret=other), body)


@pytest.mark.parametrize("skew", [-301, -3600, 301])
async def test_a_timestamp_more_than_five_minutes_off_is_rejected(provider, fake, skew):
    body = await finished_prediction(provider, fake)
    rejected(provider, signed(body, at=time.time() + skew), body)


async def test_a_timestamp_just_inside_the_window_is_accepted(provider, fake):
    body = await finished_prediction(provider, fake)
    assert isinstance(
        provider.parse_webhook(signed(body, at=time.time() - 290), body).result, Finished
    )


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_missing_header_is_rejected(provider, fake, missing):
    body = await finished_prediction(provider, fake)
    headers = signed(body)
    del headers[missing]
    rejected(provider, headers, body)


async def test_a_signature_without_the_v1_prefix_is_rejected(provider, fake):
    body = await finished_prediction(provider, fake)
    headers = signed(body)
    headers["webhook-signature"] = headers["webhook-signature"].removeprefix("v1,")
    rejected(provider, headers, body)


def test_a_signed_body_that_is_not_json_is_rejected(provider):
    body = b"not json at all"
    rejected(provider, signed(body), body)


def test_webhooks_are_rejected_when_no_secret_is_configured(http, fake):
    provider = ReplicateProvider(http, TOKEN, base_url=fake.api_url)
    body = b'{"id": "x", "status": "succeeded", "output": []}'
    rejected(provider, signed(body), body)
