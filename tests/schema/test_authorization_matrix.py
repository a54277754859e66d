"""Every operation of the schema, as anonymous, as another user and as an admin, against
resources that belong to one owner: nobody sees, spends or changes what is not theirs.

The table must name every Query, Mutation and Subscription field of the built schema: adding
an operation without deciding who may call it fails `test_every_operation_is_in_the_table`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql import ExecutionResult

from models.error_event import Severity
from services import notifications
from tests.support.schema import PASSWORD, SCHEMA, World, request_context

Variables = Callable[[World], dict[str, Any]]
# Expected outcome per caller: an error code, "OK" (data), "NULL" (null data) or, for
# subscriptions, "SILENT" (accepted, nothing for this caller yet).
Expect = tuple[set[str], set[str], set[str]]


@dataclass
class Case:
    document: str
    variables: Variables = lambda w: {}
    anonymous: set[str] = field(default_factory=lambda: {"UNAUTHENTICATED"})
    other: set[str] = field(default_factory=lambda: {"OK"})
    admin: set[str] = field(default_factory=lambda: {"OK"})
    # The answer may show the owner's data to others (logging in as the owner).
    public: bool = False


ADMIN_ONLY: Any = {"anonymous": {"UNAUTHENTICATED"}, "other": {"FORBIDDEN"}, "admin": {"OK"}}
OWNED: Any = {"anonymous": {"UNAUTHENTICATED"}, "other": {"NOT_FOUND"}}
GEN = "id status prompt"


def gen_id(w: World) -> dict[str, Any]:
    return {"id": w.generation_id}


# Several cases may cover one operation; the key before "#" is the operation.
TABLE: dict[str, Case] = {
    "Query.me": Case("{ me { id email priority } }"),
    "Query.generation": Case(
        f"query($id: ID!) {{ generation(id: $id) {{ {GEN} }} }}", gen_id, other={"NULL"}
    ),
    "Query.generation#malformed": Case(
        f'{{ generation(id: "{"x" * 40}") {{ id }} }}', other={"NULL"}, admin={"NULL"}
    ),
    "Query.generations": Case(f"{{ generations {{ edges {{ node {{ {GEN} }} }} }} }}"),
    "Query.creditBalance": Case("{ creditBalance { available reserved total } }"),
    "Query.creditTransactions": Case(
        "{ creditTransactions { edges { node { id kind amount generationId reference } } } }"
    ),
    "Query.creditTransactions#userId": Case(
        "query($u: ID) { creditTransactions(userId: $u) { edges { node { id generationId } } } }",
        lambda w: {"u": str(w.owner.id)},
        other={"FORBIDDEN"},
    ),
    "Query.models": Case("{ models { id } }", anonymous={"OK"}),
    "Query.presets": Case("{ presets { id } }", anonymous={"OK"}),
    "Query.errorEvents": Case("{ errorEvents { edges { node { id } } } }", **ADMIN_ONLY),
    "Query.errorStats": Case("{ errorStats(window: LAST_HOUR) { occurrences } }", **ADMIN_ONLY),
    "Query.providerHealth": Case("{ providerHealth { provider } }", **ADMIN_ONLY),
    "Query.apiCallLogs": Case("{ apiCallLogs { edges { node { id } } } }", **ADMIN_ONLY),
    "Query.queueStats": Case("{ queueStats { queued } }", **ADMIN_ONLY),
    "Query.creditAudit": Case("{ creditAudit { ok } }", **ADMIN_ONLY),
    "Query.notifications": Case("{ notifications { edges { node { id title message } } } }"),
    "Query.apiKeys": Case("{ apiKeys { id name prefix createdAt lastUsedAt } }"),
    "Mutation.register": Case(
        "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token } }",
        lambda w: {"e": f"m-{uuid.uuid4().hex[:10]}@example.com", "p": PASSWORD},
        anonymous={"OK"},
    ),
    "Mutation.login": Case(
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { user { id } } }",
        lambda w: {"e": w.owner.email, "p": PASSWORD},
        anonymous={"OK"},
        public=True,
    ),
    "Mutation.createGeneration": Case(
        'mutation { createGeneration(input: {prompt: "matrix"}) { id status } }'
    ),
    "Mutation.cancelGeneration": Case(
        "mutation($id: ID!) { cancelGeneration(id: $id) { id status } }",
        gen_id,
        **OWNED,
        admin={"OK", "CONFLICT"},
    ),
    "Mutation.retryGeneration": Case(
        "mutation($id: ID!) { retryGeneration(id: $id) { id status } }",
        gen_id,
        **OWNED,
        admin={"OK", "CONFLICT"},
    ),
    "Mutation.approveGeneration": Case(
        "mutation($id: ID!) { approveGeneration(id: $id) { id status } }",
        gen_id,
        **OWNED,
        admin={"OK", "CONFLICT", "BAD_USER_INPUT"},
    ),
    "Mutation.requestChanges": Case(
        'mutation($id: ID!) { requestChanges(id: $id, feedback: "bluer") { id status } }',
        gen_id,
        **OWNED,
        admin={"OK", "CONFLICT", "BAD_USER_INPUT"},
    ),
    "Mutation.adjustCredits": Case(
        'mutation($u: ID!) { adjustCredits(userId: $u, amount: 1, reason: "matrix") { total } }',
        lambda w: {"u": str(w.owner.id)},
        **ADMIN_ONLY,
    ),
    "Mutation.resolveErrorEvent": Case(
        "mutation($id: ID!) { resolveErrorEvent(id: $id) { id status } }",
        lambda w: {"id": w.event_id},
        **ADMIN_ONLY,
    ),
    "Mutation.ignoreErrorEvent": Case(
        "mutation($id: ID!) { ignoreErrorEvent(id: $id) { id status } }",
        lambda w: {"id": w.event_id},
        **ADMIN_ONLY,
    ),
    "Mutation.createApiKey": Case(
        'mutation { createApiKey(name: "ci") { secret apiKey { id prefix } } }'
    ),
    "Mutation.revokeApiKey": Case(
        "mutation($id: ID!) { revokeApiKey(id: $id) { id } }",
        lambda w: {"id": w.key_id},
        **OWNED,
        # Keys are strictly their owner's: an admin cannot revoke (or see) them either.
        admin={"NOT_FOUND"},
    ),
    "Mutation.setUserPriority": Case(
        "mutation($u: ID!) { setUserPriority(userId: $u, priority: true) { id priority } }",
        lambda w: {"u": str(w.owner.id)},
        **ADMIN_ONLY,
    ),
    "Subscription.generationUpdated": Case(
        f"subscription($id: ID!) {{ generationUpdated(id: $id) {{ {GEN} }} }}", gen_id, **OWNED
    ),
    "Subscription.myGenerations": Case(
        f"subscription {{ myGenerations {{ {GEN} }} }}", other={"SILENT"}, admin={"SILENT"}
    ),
    "Subscription.creditBalanceChanged": Case(
        "subscription { creditBalanceChanged { available } }"
    ),
    "Subscription.notifications": Case(
        "subscription { notifications { id title } }", other={"SILENT"}, admin={"SILENT"}
    ),
    "Subscription.errorEventStream": Case(
        "subscription { errorEventStream { id } }",
        anonymous={"UNAUTHENTICATED"},
        other={"FORBIDDEN"},
        admin={"SILENT"},
    ),
}


def schema_operations() -> set[str]:
    names = set()
    for root in ("Query", "Mutation", "Subscription"):
        definition = SCHEMA._schema.get_type(root)
        names |= {f"{root}.{name}" for name in definition.fields}  # type: ignore[union-attr]
    return names


def test_every_operation_is_in_the_table():
    covered = {key.split("#")[0] for key in TABLE}
    missing = schema_operations() - covered
    assert not missing, f"decide who may call these, then add them to TABLE: {sorted(missing)}"


def outcome(result: Any) -> str:
    if result.errors:
        return str((result.errors[0].extensions or {}).get("code"))
    assert result.data is not None
    return "NULL" if next(iter(result.data.values())) is None else "OK"


async def first_message(stream: Any, poke: Callable[[], Awaitable[None]]) -> Any:
    """The subscription's first result, or None when nothing came (after poking the owner's
    channels so that anything leaking would arrive)."""
    if isinstance(stream, ExecutionResult):
        return stream
    pending = asyncio.ensure_future(stream.__anext__())
    try:
        await asyncio.sleep(0.05)
        if not pending.done():
            await poke()
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        return pending.result() if done else None
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            await pending
        with contextlib.suppress(BaseException):
            await stream.aclose()


async def run_case(world: World, case: Case, caller: str) -> tuple[str, Any]:
    ctx = request_context(world.settings, world.tokens[caller])
    variables = case.variables(world)
    if case.document.lstrip().startswith("subscription"):
        stream = await SCHEMA.subscribe(case.document, variable_values=variables, context_value=ctx)

        async def poke() -> None:
            await notifications.notify(
                world.owner.id,
                kind="TEST",
                severity=Severity.INFO,
                title="owner-only notification",
                message="m",
            )

        message = await first_message(stream, poke)
        if message is None:
            return "SILENT", None
        return outcome(message), message.data
    result = await SCHEMA.execute(case.document, variable_values=variables, context_value=ctx)
    return outcome(result), result.data


@pytest.mark.parametrize("key", list(TABLE))
async def test_authorization_matrix(world, key):
    if key.split("#")[0] not in schema_operations():
        pytest.skip(f"{key} is not in this schema yet")
    case = TABLE[key]
    for caller, expected in (
        ("anonymous", case.anonymous),
        ("other", case.other),
        ("admin", case.admin),
    ):
        got, data = await run_case(world, case, caller)
        assert got in expected, f"{key} as {caller}: got {got}, expected {expected}: {data}"
        if caller != "admin" and not case.public:
            leaked = [s for s in world.secrets() if s in json.dumps(data)]
            assert not leaked, f"{key} as {caller} saw the owner's {leaked}"


ADMIN_FIELDS_HIDDEN = [
    # aliased
    "{ mine: me { id } theirs: errorEvents { edges { node { id } } } }",
    # in a fragment, and in an inline fragment
    "{ ...F } fragment F on Query { errorStats(window: LAST_HOUR) { occurrences } }",
    "{ ... on Query { x: creditAudit { ok } } }",
    # next to a field the user may read, many times over
    "{ a: queueStats { queued } b: queueStats { queued } c: providerHealth { provider } }",
]


@pytest.mark.parametrize("document", ADMIN_FIELDS_HIDDEN)
async def test_admin_fields_are_forbidden_however_they_are_asked_for(world, document):
    result: Any = await SCHEMA.execute(
        document, context_value=request_context(world.settings, world.tokens["other"])
    )
    assert result.errors
    assert {e.extensions["code"] for e in result.errors} == {"FORBIDDEN"}, result.errors
    assert result.data is None or all(v is None or k == "mine" for k, v in result.data.items()), (
        result.data
    )
