"""The notifications and errorEventStream subscriptions, driven through the real schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from models.error_event import ErrorCategory, ErrorEvent, Severity
from models.generation import Generation, GenerationStatus
from models.notification import Notification
from models.user import Role
from schema.build import build_schema
from services import auth, credits, error_events, generations
from services.error_events import Occurrence, record
from services.generations import NewGeneration
from services.runner import run_generation
from tests.support.generations import CATALOGUE, registry
from tests.support.schema import request_context

NOTIFICATIONS = """subscription {
  notifications { id kind severity title message generationId actionLabel createdAt }
}"""
STREAM = """subscription($min: Severity) {
  errorEventStream(minSeverity: $min) { id severity category message count status version }
}"""


async def subscribe(backend, user, query: str, **variables: Any) -> AsyncGenerator[Any, None]:
    """Starts the subscription; its resolver runs once the first result is pulled."""
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    stream = await build_schema().subscribe(query, variable_values=variables, context_value=context)
    assert not hasattr(stream, "errors"), stream
    return stream


async def next_result(backend, stream, before: int) -> asyncio.Future:
    """The next result, once the resolver has subscribed (it only runs when pulled)."""
    pending = asyncio.ensure_future(stream.__anext__())
    for _ in range(200):
        if backend.hub.local_subscriptions > before or pending.done():
            break
        await asyncio.sleep(0.01)
    return pending


async def test_a_failing_generation_fails_refunds_records_and_notifies(backend, make_user):
    user = await make_user(credits=5)
    generation = await generations.create_generation(
        user, NewGeneration(prompt="x", model="local-broken"), CATALOGUE, request_id="req-fail-1"
    )
    stream = await subscribe(backend, user, NOTIFICATIONS)
    pending = await next_result(backend, stream, backend.hub.local_subscriptions)
    try:
        await run_generation(generation.id, CATALOGUE, registry(), backend.store)
        result = await asyncio.wait_for(pending, 5)
    finally:
        await stream.aclose()

    row = await Generation.get(id=generation.id)
    # The code depends on the routing (one provider error, or all routes failed).
    assert row.status is GenerationStatus.FAILED and row.error_code
    assert (await credits.get_balance(user.id)).available == 5

    await error_events.flush()
    events = await ErrorEvent.filter(error_code=row.error_code, category=ErrorCategory.GENERATION)
    mine = [
        e
        for e in events
        if e.last_occurrence and e.last_occurrence["metadata"].get("generationId") == str(row.id)
    ]
    assert len(mine) == 1
    assert mine[0].last_occurrence is not None
    assert mine[0].last_occurrence["requestId"] == "req-fail-1"

    assert result.errors is None, result.errors
    note = result.data["notifications"]
    assert note["kind"] == "GENERATION_FAILED"
    assert note["severity"] == "ERROR"
    assert note["generationId"] == str(generation.id)
    assert note["actionLabel"] == "Try again"
    assert "refunded" in note["message"]
    assert await Notification.filter(generation_id=generation.id).count() == 1


async def test_users_only_hear_their_own_notifications(backend, make_user):
    mine, theirs = await make_user(credits=5), await make_user(credits=5)
    their_generation = await generations.create_generation(
        theirs, NewGeneration(prompt="x", model="local-broken"), CATALOGUE
    )
    my_generation = await generations.create_generation(
        mine, NewGeneration(prompt="x", model="local-broken"), CATALOGUE
    )
    stream = await subscribe(backend, mine, NOTIFICATIONS)
    pending = await next_result(backend, stream, backend.hub.local_subscriptions)
    try:
        await run_generation(their_generation.id, CATALOGUE, registry(), backend.store)
        await run_generation(my_generation.id, CATALOGUE, registry(), backend.store)
        result = await asyncio.wait_for(pending, 5)
    finally:
        await stream.aclose()
    assert result.data["notifications"]["generationId"] == str(my_generation.id)


async def test_admins_watch_error_groups_above_a_severity(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    stream = await subscribe(backend, admin, STREAM, min="ERROR")
    pending = await next_result(backend, stream, backend.hub.local_subscriptions)
    try:
        await record(Occurrence(Severity.WARNING, ErrorCategory.API, "Slow answer", "SLOW_W"))
        await record(Occurrence(Severity.CRITICAL, ErrorCategory.DATABASE, "Disk full", "DISK_W"))
        result = await asyncio.wait_for(pending, 5)
    finally:
        await stream.aclose()
    assert result.errors is None, result.errors
    event = result.data["errorEventStream"]
    assert (event["severity"], event["category"], event["message"]) == (
        "CRITICAL",
        "DATABASE",
        "Disk full",
    )


async def test_the_error_stream_is_for_admins_only(backend, make_user):
    user = await make_user()
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    stream = await build_schema().subscribe(STREAM, context_value=context)
    results: list[Any] = []
    if hasattr(stream, "errors"):
        results.append(stream)
    else:
        async for result in stream:
            results.append(result)
            break
    assert results[0].errors and results[0].errors[0].extensions["code"] == "FORBIDDEN"
