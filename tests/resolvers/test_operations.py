"""errorEvents, errorStats, queueStats, resolve/ignore and notifications over GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.error_event import ErrorCategory, ErrorEvent, Severity
from models.user import Role
from services import error_events, notifications
from services.error_events import Occurrence, record
from tests.support.graphql import run
from tests.support.stats import clear_counters

EVENTS = """query($first: Int, $after: String, $filter: ErrorEventFilter) {
  errorEvents(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id message severity category status count regressed errorCode
      lastOccurrence { requestId userId functionName endpoint metadata at } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
RESOLVE = """mutation($id: ID!, $notes: String) {
  resolveErrorEvent(id: $id, notes: $notes) { id status resolvedAt resolutionNotes regressed }
}"""
IGNORE = "mutation($id: ID!) { ignoreErrorEvent(id: $id) { id status } }"
STATS = """query($w: TimeWindow!) {
  errorStats(window: $w) {
    window occurrences critical unresolvedGroups generationFailureRate
    bySeverity { severity count } byCategory { category count }
  }
}"""
QUEUE = "{ queueStats { queued processing awaitingApproval oldestQueuedSeconds } }"


def code_of(result) -> str:
    assert result.errors, result.data
    return result.errors[0].extensions["code"]


async def test_admin_only_everywhere(backend, make_user):
    user = await make_user()
    cases: list[tuple[str, dict[str, object]]] = [
        (EVENTS, {}),
        (STATS, {"w": "LAST_HOUR"}),
        (QUEUE, {}),
        (RESOLVE, {"id": "1"}),
        (IGNORE, {"id": "1"}),
    ]
    for query, variables in cases:
        assert code_of(await run(backend, user, query, **variables)) == "FORBIDDEN", query


async def seed_events() -> dict[str, int]:
    """Five groups with known severities and categories, recorded oldest first."""
    await clear_counters()
    seeds = [
        (Severity.INFO, ErrorCategory.USER_ACTION, "Clicked twice", 1),
        (Severity.WARNING, ErrorCategory.WEBHOOK, "Bad signature", 2),
        (Severity.ERROR, ErrorCategory.GENERATION, "Provider said 500", 3),
        (Severity.ERROR, ErrorCategory.PAYMENT, "Card declined", 1),
        (Severity.CRITICAL, ErrorCategory.DATABASE, "Pool exhausted", 1),
    ]
    ids = {}
    for severity, category, message, times in seeds:
        for _ in range(times):
            await record(
                Occurrence(
                    severity,
                    category,
                    message,
                    error_code="SEED",
                    request_id="req-seed",
                    user_id="u-1",
                    function_name="seed",
                    endpoint="/graphql",
                    metadata={"times": times},
                )
            )
        ids[message] = (await ErrorEvent.get(message=message)).id
    return ids


async def test_error_events_filter_sort_and_page(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    ids = await seed_events()
    # An old group falls outside a window (by lastSeen).
    await ErrorEvent.filter(id=ids["Clicked twice"]).update(
        last_seen=datetime.now(UTC) - timedelta(days=2)
    )

    result = await run(backend, admin, EVENTS)
    assert result.errors is None, result.errors
    nodes = [e["node"] for e in result.data["errorEvents"]["edges"]]
    assert [n["message"] for n in nodes] == [
        "Pool exhausted",
        "Card declined",
        "Provider said 500",
        "Bad signature",
        "Clicked twice",
    ]
    provider = nodes[2]
    assert (provider["count"], provider["status"], provider["errorCode"]) == (
        3,
        "UNRESOLVED",
        "SEED",
    )
    assert provider["lastOccurrence"]["requestId"] == "req-seed"
    assert provider["lastOccurrence"]["userId"] == "u-1"
    assert provider["lastOccurrence"]["metadata"] == {"times": 3}

    filtered = await run(
        backend, admin, EVENTS, filter={"severity": ["ERROR", "CRITICAL"], "window": "LAST_HOUR"}
    )
    messages = [e["node"]["message"] for e in filtered.data["errorEvents"]["edges"]]
    assert messages == ["Pool exhausted", "Card declined", "Provider said 500"]
    by_category = await run(backend, admin, EVENTS, filter={"category": ["WEBHOOK", "PAYMENT"]})
    assert [e["node"]["message"] for e in by_category.data["errorEvents"]["edges"]] == [
        "Card declined",
        "Bad signature",
    ]
    in_window = await run(backend, admin, EVENTS, filter={"window": "LAST_24_HOURS"})
    assert len(in_window.data["errorEvents"]["edges"]) == 4

    await error_events.ignore(ids["Bad signature"])
    ignored = await run(backend, admin, EVENTS, filter={"status": ["IGNORED"]})
    assert [e["node"]["message"] for e in ignored.data["errorEvents"]["edges"]] == ["Bad signature"]

    pages, after = [], None
    while True:
        page = await run(backend, admin, EVENTS, first=2, after=after)
        connection = page.data["errorEvents"]
        pages.append([e["node"]["message"] for e in connection["edges"]])
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [m for page in pages for m in page] == [n["message"] for n in nodes]

    assert code_of(await run(backend, admin, EVENTS, first=51)) == "BAD_USER_INPUT"
    assert (await run(backend, admin, EVENTS, first=51)).errors[0].extensions["field"] == "first"
    assert code_of(await run(backend, admin, EVENTS, after="bm9wZQ==")) == "BAD_USER_INPUT"
    assert code_of(await run(backend, admin, EVENTS, filter={"severity": ["LOUD"]})) == (
        "BAD_USER_INPUT"
    )


async def test_resolve_regress_and_ignore_over_graphql(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    ids = await seed_events()
    declined = str(ids["Card declined"])

    result = await run(backend, admin, RESOLVE, id=declined, notes="Stripe outage, over now")
    assert result.errors is None, result.errors
    resolved = result.data["resolveErrorEvent"]
    assert (resolved["status"], resolved["resolutionNotes"]) == (
        "RESOLVED",
        "Stripe outage, over now",
    )
    assert resolved["resolvedAt"] is not None

    await record(Occurrence(Severity.ERROR, ErrorCategory.PAYMENT, "Card declined", "SEED"))
    again = await run(backend, admin, EVENTS, filter={"category": ["PAYMENT"]})
    node = again.data["errorEvents"]["edges"][0]["node"]
    assert (node["status"], node["regressed"], node["count"]) == ("UNRESOLVED", True, 2)

    result = await run(backend, admin, IGNORE, id=declined)
    assert result.data["ignoreErrorEvent"] == {"id": declined, "status": "IGNORED"}

    for missing in ("999999999", "not-an-id"):
        assert code_of(await run(backend, admin, IGNORE, id=missing)) == "NOT_FOUND"
    assert code_of(await run(backend, admin, RESOLVE, id=declined, notes="x" * 5000)) == (
        "BAD_USER_INPUT"
    )


async def test_error_stats_over_graphql(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    ids = await seed_events()
    await error_events.resolve(ids["Clicked twice"])
    result = await run(backend, admin, STATS, w="LAST_24_HOURS")
    assert result.errors is None, result.errors
    data = result.data["errorStats"]
    assert data["window"] == "LAST_24_HOURS"
    assert (data["occurrences"], data["critical"], data["unresolvedGroups"]) == (8, 1, 4)
    assert data["bySeverity"] == [
        {"severity": "CRITICAL", "count": 1},
        {"severity": "ERROR", "count": 4},
        {"severity": "WARNING", "count": 2},
        {"severity": "INFO", "count": 1},
    ]
    assert data["byCategory"][0] == {"category": "GENERATION", "count": 3}
    assert data["generationFailureRate"] == 0.0


async def test_queue_stats_over_graphql(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    result = await run(backend, admin, QUEUE)
    assert result.errors is None, result.errors
    queue = result.data["queueStats"]
    assert set(queue) == {"queued", "processing", "awaitingApproval", "oldestQueuedSeconds"}
    assert all(isinstance(queue[k], int) for k in ("queued", "processing", "awaitingApproval"))


async def test_notifications_query_lists_only_ones_own(backend, make_user):
    user, other = await make_user(), await make_user()
    for n in range(3):
        await notifications.notify(
            user.id, kind="TEST", severity=Severity.INFO, title=f"mine {n}", message="m"
        )
    await notifications.notify(
        other.id, kind="TEST", severity=Severity.WARNING, title="theirs", message="m"
    )
    query = """query($first: Int, $after: String) {
      notifications(first: $first, after: $after) {
        edges { cursor node { id kind severity title message generationId actionLabel createdAt } }
        pageInfo { hasNextPage endCursor }
      }
    }"""
    first = await run(backend, user, query, first=2)
    assert first.errors is None, first.errors
    connection = first.data["notifications"]
    assert [e["node"]["title"] for e in connection["edges"]] == ["mine 2", "mine 1"]
    assert connection["pageInfo"]["hasNextPage"] is True
    rest = await run(backend, user, query, first=2, after=connection["pageInfo"]["endCursor"])
    assert [e["node"]["title"] for e in rest.data["notifications"]["edges"]] == ["mine 0"]
    theirs = await run(backend, other, query)
    assert [e["node"]["title"] for e in theirs.data["notifications"]["edges"]] == ["theirs"]
    assert code_of(await run(backend, user, query, first=0)) == "BAD_USER_INPUT"
