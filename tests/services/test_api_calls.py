"""The API call log's writer: one row per provider call, named after the generation and
request the runner is working on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from models.api_call import ApiCallLog
from providers.http import CallRecord
from services.api_calls import record_call
from services.provider_routing.call_context import current_generation, current_request


async def test_a_call_is_one_row_with_everything_it_says(backend):
    generation_id = uuid.uuid4()
    before = datetime.now(UTC)
    generation_token = current_generation.set(generation_id)
    request_token = current_request.set("req-1")
    try:
        await record_call(
            CallRecord("acme", "m-1", "POST", "https://acme/" + "x" * 600, 502, 12, False, "boom")
        )
    finally:
        current_generation.reset(generation_token)
        current_request.reset(request_token)
    await record_call(CallRecord("acme", None, "GET", "https://acme/p", None, 3, True, None))
    rows = await ApiCallLog.filter(provider="acme").order_by("id")
    failed, ok = rows[-2:]
    assert (failed.model, failed.method, failed.status_code, failed.duration_ms) == (
        "m-1",
        "POST",
        502,
        12,
    )
    assert (failed.ok, failed.error, failed.generation_id, failed.request_id) == (
        False,
        "boom",
        generation_id,
        "req-1",
    )
    assert len(failed.url) == 500
    assert before - timedelta(seconds=1) <= failed.created_at <= datetime.now(UTC)
    assert (ok.model, ok.status_code, ok.ok, ok.error, ok.generation_id, ok.request_id) == (
        None,
        None,
        True,
        None,
        None,
        None,
    )


async def test_a_call_that_cannot_be_logged_does_not_fail(backend, monkeypatch, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("database down")

    from tortoise import connections

    # Undone before the test ends: the ledger audit after it needs the database back.
    with monkeypatch.context() as patched:
        patched.setattr(type(connections.get("default")), "execute_query", broken)
        await record_call(CallRecord("acme", None, "GET", "https://acme/p", 200, 1, True, None))
    assert "could not log a call to acme" in caplog.text


async def test_the_built_in_provider_is_no_third_party_api(backend):
    """`local` draws on this machine: it is neither logged as an API call nor listed, and
    provider health covers the third-party providers only, even where `local` serves."""
    from services.api_calls import health, list_calls
    from services.catalogue import parse_catalogue
    from tests.support.providers import provider_deps

    await record_call(CallRecord("local", "pattern-v1", "POST", "local://", 200, 5, True, None))
    await record_call(CallRecord("acme", "m-1", "POST", "https://acme/x", 200, 5, True, None))
    page = await list_calls(first=50, after=None, provider=None, failed_only=False)
    assert page.items and all(row.provider != "local" for row in page.items)
    assert not await ApiCallLog.filter(provider="local").exists()

    catalogue = parse_catalogue(
        {
            "models": {
                "solo": {
                    "kind": "IMAGE",
                    "cost_per_output": 1,
                    "routes": [
                        {"provider": "acme", "model": "m-1"},
                        {"provider": "local", "model": "pattern-v1"},
                    ],
                }
            }
        }
    )
    assert [h.provider for h in await health(catalogue, provider_deps())] == ["acme"]
