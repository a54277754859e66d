"""The fal adapter against a fake fal queue served over real HTTP (tests/support/fakes/fal.py):
the wire format, the queue lifecycle, failures, and signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import sys
import time
from typing import Any

import httpx
import orjson
import pytest
from PIL import Image

from models.generation import GenerationKind
from providers.base import Finished, Pending, ProviderError, ProviderRequest, WebhookUpdate
from providers.fal import FalProvider, _app_root
from providers.http import CallRecord, ProviderHTTP
from tests.support.fakes import served
from tests.support.fakes.fal import FakeFal
from tests.support.providers import Progress

KEY = "fal-test-key-5f2c9e0b7d"
MODEL = "fal-ai/flux/dev"
HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None
needs_cryptography = pytest.mark.skipif(
    not HAS_CRYPTOGRAPHY, reason="ED25519 needs the 'cryptography' package"
)


@pytest.fixture
def fake():
    with served(FakeFal(api_key=KEY)) as fal:
        yield fal


@pytest.fixture
def records() -> list[CallRecord]:
    return []


def make_provider(
    fake: FakeFal, client: httpx.AsyncClient, records: list[CallRecord], **kwargs: Any
) -> FalProvider:
    async def sink(record: CallRecord) -> None:
        records.append(record)

    kwargs.setdefault("api_key", KEY)
    return FalProvider(
        ProviderHTTP("fal", client, sink),
        base_url=fake.base_url,
        jwks_url=f"{fake.base_url}/.well-known/jwks.json",
        **kwargs,
    )


@pytest.fixture
def provider(fake, client, records):
    yield make_provider(fake, client, records)
    # Whatever happened in the test, the key never reached the call log.
    assert KEY not in repr(records)


def request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "kind": GenerationKind.IMAGE,
        "model": MODEL,
        "prompt": "a copper lantern by the river",
        "timeout": 5.0,
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


async def run_to_end(provider: FalProvider, req: ProviderRequest) -> Finished:
    result = await provider.start(req, Progress())
    for _ in range(10):
        assert isinstance(result, Pending)
        result = await provider.poll(req, result.job_id)
        if isinstance(result, Finished):
            return result
    raise AssertionError("never finished")


# -- the queue ------------------------------------------------------------------------------


async def test_submit_polls_through_the_queue_to_finished_images(provider, fake, client):
    req = request(
        negative_prompt="blurry",
        width=64,
        height=40,
        seed=42,
        num_outputs=2,
        params={"num_inference_steps": 28, "enable_safety_checker": True},
    )
    progress = Progress()
    started = await provider.start(req, progress)

    assert isinstance(started, Pending)
    assert started.stage == "in queue (position 2)"
    assert progress.calls == [(0.0, "in queue (position 2)")]
    [submit] = fake.calls("submit")
    assert submit.path == "/fal-ai/flux/dev"
    assert submit.query == {}  # no webhook asked for
    assert submit.headers["authorization"] == f"Key {KEY}"
    assert submit.json == {
        "prompt": "a copper lantern by the river",
        "negative_prompt": "blurry",
        "image_size": {"width": 64, "height": 40},
        "seed": 42,
        "num_images": 2,
        "num_inference_steps": 28,
        "enable_safety_checker": True,
    }
    assert started.job_id in fake.jobs

    queued = await provider.poll(req, started.job_id)
    assert isinstance(queued, Pending)
    assert (queued.job_id, queued.stage, queued.progress) == (
        started.job_id,
        "in queue (position 1)",
        None,
    )
    running = await provider.poll(req, started.job_id)
    assert isinstance(running, Pending)
    assert running.stage == "processing"
    assert running.progress == pytest.approx(0.5)  # from the runner's " 50%|..." log line
    done = await provider.poll(req, started.job_id)
    assert isinstance(done, Finished)

    # Status and result use the app root only (fal-ai/flux), never the endpoint sub-path.
    statuses = fake.calls("status")
    assert [s.path for s in statuses] == [f"/fal-ai/flux/requests/{started.job_id}/status"] * 3
    assert all(s.query == {"logs": "1"} for s in statuses)
    assert all(s.headers["authorization"] == f"Key {KEY}" for s in statuses)
    [result] = fake.calls("result")
    assert result.path == f"/fal-ai/flux/requests/{started.job_id}"
    assert result.method == "GET"

    assert len(done.outputs) == 2
    for output in done.outputs:
        assert output.url is not None and output.url.startswith(fake.base_url + "/files/")
        assert output.data is None
        assert (output.content_type, output.width, output.height) == ("image/png", 64, 40)
        fetched = await client.get(output.url)
        image = Image.open(io.BytesIO(fetched.content))
        assert (image.format, image.size) == ("PNG", (64, 40))


async def test_webhook_url_goes_in_the_fal_webhook_query_parameter(provider, fake):
    hook = "https://kiln.example/webhooks/fal?generation=abc&x=1"
    started = await provider.start(request(webhook_url=hook), Progress())
    [submit] = fake.calls("submit")
    assert submit.query == {"fal_webhook": hook}
    assert fake.jobs[started.job_id].webhook == hook
    assert isinstance(started, Pending)
    assert started.poll_after > 2.0  # polling is only the fallback now


async def test_image_to_image_sends_a_data_url_and_strength(provider, fake):
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(picture, "PNG")
    req = request(
        model="fal-ai/flux/dev/image-to-image",
        input_image=picture.getvalue(),
        input_image_type="image/png",
        strength=0.6,
    )
    finished = await run_to_end(provider, req)
    [submit] = fake.calls("submit")
    assert submit.path == "/fal-ai/flux/dev/image-to-image"
    body = submit.json
    assert body["strength"] == 0.6
    assert body["image_url"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["image_url"].split(",", 1)[1]) == picture.getvalue()
    assert fake.calls("result")[0].path.startswith("/fal-ai/flux/requests/")
    assert len(finished.outputs) == 1


async def test_text_and_video_requests_send_no_image_fields(provider, fake):
    finished = await run_to_end(
        provider,
        request(
            kind=GenerationKind.VIDEO,
            model="fal-ai/fake-video/image-to-video",
            width=40,
            height=40,
            params={"duration": "5"},
        ),
    )
    [submit] = fake.calls("submit")
    assert submit.json == {"prompt": "a copper lantern by the river", "duration": "5"}
    [output] = finished.outputs
    assert output.url is not None and output.url.endswith(".webp")
    assert output.content_type == "image/webp"


def test_status_urls_use_the_app_root():
    assert _app_root("fal-ai/flux/dev") == "fal-ai/flux"
    assert _app_root("fal-ai/flux") == "fal-ai/flux"
    assert _app_root("fal-ai/kling-video/v2.5-turbo/pro/image-to-video") == "fal-ai/kling-video"
    assert _app_root("workflows/someone/my-flow/run") == "workflows/someone/my-flow"
    for bad in ("flux", "fal-ai/../admin", "fal-ai/flux?x=1", "fal-ai//flux"):
        with pytest.raises(ProviderError) as caught:
            _app_root(bad)
        assert caught.value.code == "PROVIDER_REJECTED"
        assert caught.value.retryable is False


async def test_poll_rejects_a_job_id_that_is_not_a_fal_request_id(provider, fake):
    with pytest.raises(ProviderError) as caught:
        await provider.poll(request(), "../../admin")
    assert caught.value.code == "PROVIDER_BAD_RESPONSE"
    assert fake.requests == []


# -- cancel ---------------------------------------------------------------------------------


async def test_cancel_puts_to_the_cancel_url(provider, fake):
    started = await provider.start(request(), Progress())
    await provider.cancel(request(), started.job_id)
    [cancel] = fake.calls("cancel")
    assert cancel.method == "PUT"
    assert cancel.path == f"/fal-ai/flux/requests/{started.job_id}/cancel"
    assert cancel.headers["authorization"] == f"Key {KEY}"
    assert fake.jobs[started.job_id].cancelled


async def test_cancel_after_completion_is_a_quiet_no_op(provider, fake):
    req = request()
    started = await provider.start(req, Progress())
    for _ in range(3):
        await provider.poll(req, started.job_id)
    await provider.cancel(request(), started.job_id)  # ALREADY_COMPLETED (400)
    assert fake.calls("cancel")[0].path.endswith("/cancel")
    assert not fake.jobs[started.job_id].cancelled


async def test_any_process_can_cancel_with_the_request(provider, fake, client, records):
    started = await provider.start(request(), Progress())
    other_process = make_provider(fake, client, records)
    await other_process.cancel(request(), started.job_id)
    assert fake.jobs[started.job_id].cancelled


async def test_cancel_server_error_is_raised(provider, fake):
    started = await provider.start(request(), Progress())
    fake.fail("cancel", 503)
    with pytest.raises(ProviderError) as caught:
        await provider.cancel(request(), started.job_id)
    assert caught.value.code == "PROVIDER_UNAVAILABLE"


# -- failures -------------------------------------------------------------------------------


async def test_429_is_retryable_with_the_retry_after_hint(provider, fake, records):
    fake.fail("submit", 429, {"detail": "Too many requests"}, headers={"Retry-After": "7"})
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    error = caught.value
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_RATE_LIMITED", True, 429)
    assert error.retry_after == 7.0
    [record] = records
    assert (record.method, record.status_code, record.ok) == ("POST", 429, False)
    assert record.url.startswith("http://127.0.0.1") and record.url.endswith("/fal-ai/flux/dev")


async def test_500_is_retryable_and_the_next_poll_goes_on(provider, fake):
    req = request()
    started = await provider.start(req, Progress())
    fake.fail("status", 500, {"detail": "Internal Server Error"})
    with pytest.raises(ProviderError) as caught:
        await provider.poll(req, started.job_id)
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_UNAVAILABLE", True)
    again = await provider.poll(req, started.job_id)
    assert isinstance(again, Pending)


async def test_x_fal_retryable_false_makes_a_5xx_final(provider, fake):
    fake.fail("submit", 503, {"detail": "no"}, headers={"X-Fal-Retryable": "false"})
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_UNAVAILABLE", False)


async def test_a_slow_answer_is_a_provider_timeout(provider, fake):
    fake.slow("submit", 1.0)
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(timeout=0.2), Progress())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_TIMEOUT", True)


async def test_malformed_json_is_a_bad_response(provider, fake):
    req = request()
    started = await provider.start(req, Progress())
    fake.fail(
        "status", 200, raw=b"<html>gateway hiccup</html>", headers={"content-type": "text/html"}
    )
    with pytest.raises(ProviderError) as caught:
        await provider.poll(req, started.job_id)
    assert caught.value.code == "PROVIDER_BAD_RESPONSE"


async def test_submit_without_a_request_id_is_a_bad_response(provider, fake):
    fake.fail("submit", 200, {"status": "IN_QUEUE"})
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    assert caught.value.code == "PROVIDER_BAD_RESPONSE"


async def test_401_is_final_and_never_echoes_the_key(fake, client, records):
    wrong = "fal-wrong-key-0a1b2c3d4e"
    provider = make_provider(fake, client, records, api_key=wrong)
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    error = caught.value
    assert (error.code, error.retryable, error.status_code) == ("PROVIDER_AUTH", False, 401)
    assert "Invalid key" in error.message  # the provider's text is kept...
    assert wrong not in error.message  # ...without the key it echoed back
    assert wrong not in repr(records) and wrong not in repr(provider)


async def test_422_validation_is_final(provider, fake):
    fake.fail(
        "submit",
        422,
        {"detail": [{"loc": ["body", "image_size"], "msg": "too big", "type": "value_error"}]},
    )
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_REJECTED", False)
    assert "too big" in caught.value.message


async def test_a_model_error_on_the_result_is_final(provider, fake):
    from tests.support.fakes.fal import Canned

    fake.result_override = Canned(
        422,
        orjson.dumps({"detail": [{"loc": ["body", "seed"], "msg": "bad seed", "type": "x"}]}),
    )
    with pytest.raises(ProviderError) as caught:
        await run_to_end(provider, request())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_REJECTED", False)


async def test_content_policy_422_is_content_rejected(provider, fake):
    fake.fail(
        "submit",
        422,
        {
            "detail": [
                {
                    "loc": ["body", "prompt"],
                    "msg": "flagged by a content checker",
                    "type": "content_policy_violation",
                    "url": "https://docs.fal.ai/errors/#content_policy_violation",
                }
            ]
        },
    )
    with pytest.raises(ProviderError) as caught:
        await provider.start(request(), Progress())
    assert (caught.value.code, caught.value.retryable) == ("CONTENT_REJECTED", False)


async def test_completed_with_an_error_is_final(provider, fake):
    fake.status_error = {"error": "Model crashed on this input", "error_type": "model_error"}
    with pytest.raises(ProviderError) as caught:
        await run_to_end(provider, request())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_ERROR", False)
    assert "Model crashed" in caught.value.message
    assert fake.calls("result") == []


async def test_completed_with_an_infrastructure_error_may_be_retried(provider, fake):
    fake.status_error = {"error": "Request timed out", "error_type": "request_timeout"}
    with pytest.raises(ProviderError) as caught:
        await run_to_end(provider, request())
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_UNAVAILABLE", True)


async def test_all_images_flagged_nsfw_is_content_rejected(provider, fake):
    fake.nsfw = True
    with pytest.raises(ProviderError) as caught:
        await run_to_end(provider, request(num_outputs=2))
    assert (caught.value.code, caught.value.retryable) == ("CONTENT_REJECTED", False)


async def test_flagged_images_are_dropped_when_others_pass(provider, fake):
    fake.nsfw = [False, True, False]
    finished = await run_to_end(provider, request(num_outputs=3))
    assert [o.url.rsplit("-", 1)[1] for o in finished.outputs if o.url] == ["0.png", "2.png"]


async def test_every_call_is_recorded_without_the_key(provider, fake, records):
    await run_to_end(provider, request(webhook_url="https://kiln.example/hook?token=abc"))
    assert [(r.method, r.ok) for r in records] == [("POST", True)] + [("GET", True)] * 4
    assert all(r.provider == "fal" and r.model == MODEL for r in records)
    # Query strings (the webhook URL) are not logged; the key is in no record.
    assert all("?" not in r.url for r in records)
    assert KEY not in repr(records)


# -- webhooks -------------------------------------------------------------------------------


def new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def jwk(private_key: Any) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "test-key"}


def signed(
    private_key: Any,
    body: bytes,
    request_id: str,
    *,
    user_id: str = "user-123",
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers exactly as fal documents them: ED25519 over
    request_id \\n user_id \\n timestamp \\n sha256_hex(body), hex-encoded."""
    sent_at = str(int(time.time()) if timestamp is None else timestamp)
    message = "\n".join((request_id, user_id, sent_at, hashlib.sha256(body).hexdigest()))
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": sent_at,
        "X-Fal-Webhook-Signature": private_key.sign(message.encode()).hex(),
    }


async def finished_job(provider: FalProvider, fake: FakeFal, **overrides: Any) -> str:
    started = await provider.start(request(**overrides), Progress())
    assert isinstance(started, Pending)
    job = fake.jobs[started.job_id]
    job.polls = len(job.positions) + 1  # done, as far as the fake knows
    return started.job_id


def ok_body(fake: FakeFal, job_id: str) -> bytes:
    output = fake.output(fake.jobs[job_id])
    return orjson.dumps(
        {
            "request_id": job_id,
            "gateway_request_id": job_id,
            "status": "OK",
            "payload": output,
            "error": None,
        }
    )


def assert_rejected(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call()
    assert (caught.value.code, caught.value.retryable) == ("WEBHOOK_REJECTED", False)
    return caught.value


@needs_cryptography
async def test_refresh_keys_fetches_the_jwks_and_verifies_an_ok_webhook(provider, fake, client):
    key = new_key()
    fake.jwks = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}, jwk(key)]}
    job_id = await finished_job(provider, fake, width=24, height=16)
    body = ok_body(fake, job_id)
    headers = signed(key, body, job_id)

    assert provider.keys_stale
    assert_rejected(lambda: provider.parse_webhook(headers, body))  # no keys yet
    await provider.refresh_keys()
    assert not provider.keys_stale
    [jwks_call] = fake.calls("jwks")
    assert jwks_call.method == "GET" and jwks_call.path == "/.well-known/jwks.json"
    await provider.refresh_keys()  # fresh: not fetched again
    assert len(fake.calls("jwks")) == 1

    update = provider.parse_webhook(headers, body)
    assert isinstance(update, WebhookUpdate)
    assert update.job_id == job_id
    assert isinstance(update.result, Finished)
    [output] = update.result.outputs
    assert (output.content_type, output.width, output.height) == ("image/png", 24, 16)
    assert output.url is not None
    image = Image.open(io.BytesIO((await client.get(output.url)).content))
    assert image.size == (24, 16)


@needs_cryptography
async def test_headers_are_matched_case_insensitively(fake, client, records):
    key = new_key()
    provider = make_provider(fake, client, records, jwks={"keys": [jwk(key)]})
    job_id = await finished_job(provider, fake)
    body = ok_body(fake, job_id)
    headers = {name.lower(): value for name, value in signed(key, body, job_id).items()}
    assert isinstance(provider.parse_webhook(headers, body).result, Finished)


@needs_cryptography
async def test_an_error_webhook_is_a_final_provider_error(fake, client, records):
    key = new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    job_id = await finished_job(provider, fake)
    body = orjson.dumps(
        {
            "request_id": job_id,
            "gateway_request_id": job_id,
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {"detail": [{"loc": ["body", "seed"], "msg": "bad", "type": "x"}]},
        }
    )
    update = provider.parse_webhook(signed(key, body, job_id), body)
    assert update.job_id == job_id
    assert isinstance(update.result, ProviderError)
    assert (update.result.code, update.result.retryable) == ("PROVIDER_ERROR", False)
    assert "422" in update.result.message


@needs_cryptography
async def test_a_content_policy_error_webhook_is_content_rejected(fake, client, records):
    key = new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    job_id = await finished_job(provider, fake)
    body = orjson.dumps(
        {
            "request_id": job_id,
            "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {"detail": [{"msg": "flagged", "type": "content_policy_violation"}]},
        }
    )
    update = provider.parse_webhook(signed(key, body, job_id), body)
    assert isinstance(update.result, ProviderError)
    assert update.result.code == "CONTENT_REJECTED"


@needs_cryptography
async def test_an_ok_webhook_with_all_images_flagged_is_content_rejected(fake, client, records):
    key = new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    fake.nsfw = True
    job_id = await finished_job(provider, fake)
    body = ok_body(fake, job_id)
    update = provider.parse_webhook(signed(key, body, job_id), body)
    assert isinstance(update.result, ProviderError)
    assert update.result.code == "CONTENT_REJECTED"


@needs_cryptography
async def test_an_ok_webhook_without_its_payload_asks_for_a_poll(fake, client, records):
    key = new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    job_id = await finished_job(provider, fake)
    body = orjson.dumps(
        {"request_id": job_id, "status": "OK", "payload": None, "payload_error": "too big"}
    )
    update = provider.parse_webhook(signed(key, body, job_id), body)
    assert isinstance(update.result, Pending)
    assert update.result.job_id == job_id
    finished = await provider.poll(request(), job_id)  # and the result is there
    assert isinstance(finished, Finished)


@needs_cryptography
async def test_tampered_body_wrong_key_and_wrong_ids_are_rejected(fake, client, records):
    key, stranger = new_key(), new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    job_id = await finished_job(provider, fake)
    body = ok_body(fake, job_id)
    headers = signed(key, body, job_id)

    tampered = body.replace(b'"OK"', b'"ERROR"')
    assert_rejected(lambda: provider.parse_webhook(headers, tampered))
    assert_rejected(lambda: provider.parse_webhook(signed(stranger, body, job_id), body))
    # Each signed header is part of the message.
    for name, value in (
        ("X-Fal-Webhook-User-Id", "someone-else"),
        ("X-Fal-Webhook-Request-Id", "00000099-fake-4000-8000-fa1000000000"),
        ("X-Fal-Webhook-Timestamp", str(int(headers["X-Fal-Webhook-Timestamp"]) + 1)),
    ):
        assert_rejected(lambda n=name, v=value: provider.parse_webhook({**headers, n: v}, body))
    # A genuine signature over a body that names another request.
    other = body.replace(job_id.encode(), b"00000099-fake-4000-8000-fa1000000000")
    assert_rejected(lambda: provider.parse_webhook(signed(key, other, job_id), other))
    # Not hex, and hex of the wrong length.
    for bad in ("zz" * 64, "ab" * 10):
        assert_rejected(
            lambda b=bad: provider.parse_webhook({**headers, "X-Fal-Webhook-Signature": b}, body)
        )


@needs_cryptography
@pytest.mark.parametrize("offset", [-301, -3600, 301])
async def test_a_timestamp_more_than_five_minutes_off_is_rejected(fake, client, records, offset):
    key = new_key()
    provider = make_provider(fake, client, records, jwks=[jwk(key)])
    job_id = await finished_job(provider, fake)
    body = ok_body(fake, job_id)
    headers = signed(key, body, job_id, timestamp=int(time.time()) + offset)
    error = assert_rejected(lambda: provider.parse_webhook(headers, body))
    assert "timestamp" in error.message
    fresh = signed(key, body, job_id, timestamp=int(time.time()) - 240)
    assert isinstance(provider.parse_webhook(fresh, body).result, Finished)


@needs_cryptography
async def test_a_jwks_without_ed25519_keys_is_a_bad_response(provider, fake):
    fake.jwks = {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}
    with pytest.raises(ProviderError) as caught:
        await provider.refresh_keys()
    assert caught.value.code == "PROVIDER_BAD_RESPONSE"
    assert provider.keys_stale


async def test_a_failing_jwks_fetch_keeps_the_cache_stale(provider, fake):
    fake.fail("jwks", 503)
    with pytest.raises(ProviderError) as caught:
        await provider.refresh_keys()
    assert (caught.value.code, caught.value.retryable) == ("PROVIDER_UNAVAILABLE", True)
    assert provider.keys_stale


DUMMY_JWKS = [{"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(b"k" * 32).decode()}]


@pytest.mark.parametrize(
    "missing",
    [
        "X-Fal-Webhook-Request-Id",
        "X-Fal-Webhook-User-Id",
        "X-Fal-Webhook-Timestamp",
        "X-Fal-Webhook-Signature",
    ],
)
async def test_a_missing_header_is_rejected(fake, client, records, missing):
    provider = make_provider(fake, client, records, jwks=DUMMY_JWKS)
    headers = {
        "X-Fal-Webhook-Request-Id": "00000001-fake-4000-8000-fa1000000000",
        "X-Fal-Webhook-User-Id": "user-123",
        "X-Fal-Webhook-Timestamp": str(int(time.time())),
        "X-Fal-Webhook-Signature": "ab" * 64,
    }
    del headers[missing]
    error = assert_rejected(lambda: provider.parse_webhook(headers, b"{}"))
    assert "missing" in error.message


async def test_a_stale_timestamp_is_rejected_before_any_crypto(fake, client, records):
    provider = make_provider(fake, client, records, jwks=DUMMY_JWKS)
    headers = {
        "X-Fal-Webhook-Request-Id": "00000001-fake-4000-8000-fa1000000000",
        "X-Fal-Webhook-User-Id": "user-123",
        "X-Fal-Webhook-Timestamp": str(int(time.time()) - 600),
        "X-Fal-Webhook-Signature": "ab" * 64,
    }
    error = assert_rejected(lambda: provider.parse_webhook(headers, b"{}"))
    assert "timestamp" in error.message


async def test_without_the_cryptography_package_every_webhook_is_refused(
    fake, client, records, monkeypatch
):
    for module in ("cryptography.exceptions", "cryptography.hazmat.primitives.asymmetric.ed25519"):
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    provider = make_provider(fake, client, records, jwks=DUMMY_JWKS)
    headers = {
        "X-Fal-Webhook-Request-Id": "00000001-fake-4000-8000-fa1000000000",
        "X-Fal-Webhook-User-Id": "user-123",
        "X-Fal-Webhook-Timestamp": str(int(time.time())),
        "X-Fal-Webhook-Signature": "ab" * 64,
    }
    error = assert_rejected(lambda: provider.parse_webhook(headers, b"{}"))
    assert "cryptography" in error.message


async def test_jwks_loaded_from_the_fake_server_without_cryptography(provider, fake):
    fake.jwks = {"keys": DUMMY_JWKS}
    await provider.refresh_keys()
    assert not provider.keys_stale
    assert fake.calls("jwks")[0].headers.get("authorization") is None  # no key sent there


def test_fal_declares_the_signed_webhooks_hook_the_webhook_route_calls(provider):
    from providers.base import SignedWebhooks
    from providers.local import LocalProvider

    assert isinstance(provider, SignedWebhooks)
    assert not isinstance(LocalProvider(), SignedWebhooks)
