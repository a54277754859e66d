"""The schema's protective extensions: document limits, introspection switch, input caps on
every string argument, and rate limits on mutations and subscriptions."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLScalarType, get_introspection_query
from starlette.responses import Response

from models.user import Role
from schema.build import build_schema
from schema.documents import DocumentValidation
from schema.security import DEFAULT_MAX_STRING, MAX_LIST_ITEMS, MAX_STRING
from services import auth
from services.rate_limits import MemoryCounters
from tests.support.schema import PASSWORD, SCHEMA, request_context
from tests.support.work import counted_calls


def first_error(result: Any) -> Any:
    return result.errors[0]


def root_fields(root: str) -> Any:
    return SCHEMA._schema.get_type(root).fields  # type: ignore[union-attr]


def code(result: Any) -> str:
    assert result.errors, result.data
    return str(first_error(result).extensions.get("code"))


async def test_a_too_deep_query_is_refused(world):
    nested = "id " + "parent { " * 14 + "id" + " }" * 14
    result = await SCHEMA.execute(
        f'{{ generation(id: "{world.generation_id}") {{ {nested} }} }}',
        context_value=request_context(world.settings, world.tokens["other"]),
    )
    assert code(result) == "BAD_USER_INPUT"
    assert "exceeds maximum operation depth" in first_error(result).message


async def test_a_hundred_aliases_are_refused(world):
    aliases = " ".join(f"a{i}: me {{ id }}" for i in range(100))
    result = await SCHEMA.execute(
        f"{{ {aliases} }}", context_value=request_context(world.settings, world.tokens["other"])
    )
    assert code(result) == "BAD_USER_INPUT"
    assert "aliases" in first_error(result).message


async def test_too_many_tokens_are_refused_before_anything_runs(world):
    fields = " ".join(["__typename"] * 3000)
    result = await SCHEMA.execute(f"{{ {fields} }}", context_value=request_context(world.settings))
    assert code(result) == "BAD_USER_INPUT"


async def test_graphiqls_introspection_query_fits_the_limits(world):
    result = await SCHEMA.execute(
        get_introspection_query(), context_value=request_context(world.settings)
    )
    assert result.errors is None


async def test_introspection_can_be_switched_off(world):
    settings = world.settings.model_copy(update={"introspection_enabled": False})
    schema = build_schema(settings)
    result = await schema.execute(
        "{ __schema { types { name } } }", context_value=request_context(settings)
    )
    assert code(result) == "BAD_USER_INPUT"
    ok = await schema.execute("{ models { id } }", context_value=request_context(settings))
    assert ok.errors is None


async def test_a_repeated_document_is_validated_once(world):
    """The limits must not defeat the validation cache: the second run of the same text is a
    cache hit, and the limits still apply to it."""
    schema = build_schema(world.settings)
    validator = next(
        e.args[0]
        for e in schema.extensions
        if isinstance(e, functools.partial) and e.func is DocumentValidation
    )
    query = f'{{ generation(id: "{world.generation_id}") {{ id status }} }}'
    for _ in range(3):
        result = await schema.execute(
            query, context_value=request_context(world.settings, world.tokens["other"])
        )
        assert result.errors is None
    assert (validator.misses, validator.hits) == (1, 2)
    deep = "id " + "parent { " * 14 + "id" + " }" * 14
    too_deep = f'{{ generation(id: "{world.generation_id}") {{ {deep} }} }}'
    for _ in range(2):
        refused = await schema.execute(too_deep, context_value=request_context(world.settings))
        assert code(refused) == "BAD_USER_INPUT"


def _dummy(graphql_type: Any, name: str) -> Any:
    """A value of the argument's type that passes coercion."""
    if isinstance(graphql_type, GraphQLNonNull):
        return _dummy(graphql_type.of_type, name)
    if isinstance(graphql_type, GraphQLList):
        return [_dummy(graphql_type.of_type, name)]
    if isinstance(graphql_type, GraphQLScalarType):
        return {"Int": 1, "Float": 0.5, "Boolean": False, "JSON": {}}.get(
            graphql_type.name, f"{name}-value"
        )
    if hasattr(graphql_type, "values"):  # enum
        return next(iter(graphql_type.values))
    return {
        field_name: _dummy(f.type, field_name)
        for field_name, f in graphql_type.fields.items()
        if isinstance(f.type, GraphQLNonNull)
    }


def string_inputs() -> list[tuple[str, str, list[str]]]:
    """(root type, field, path to a String/ID argument or input field) for every one."""
    found = []
    for root in ("Query", "Mutation"):
        for field_name, field_def in root_fields(root).items():
            for arg_name, arg in field_def.args.items():
                inner = arg.type
                while isinstance(inner, GraphQLNonNull | GraphQLList):
                    inner = inner.of_type
                if isinstance(inner, GraphQLScalarType) and inner.name in ("String", "ID"):
                    found.append((root, field_name, [arg_name]))
                elif hasattr(inner, "fields"):
                    for sub_name, sub in inner.fields.items():
                        sub_type = sub.type
                        while isinstance(sub_type, GraphQLNonNull | GraphQLList):
                            sub_type = sub_type.of_type
                        if getattr(sub_type, "name", "") in ("String", "ID"):
                            found.append((root, field_name, [arg_name, sub_name]))
    return found


@pytest.mark.parametrize(
    "root,field,path", string_inputs(), ids=lambda v: ".".join(v) if isinstance(v, list) else v
)
async def test_every_string_input_is_capped(world, root, field, path):
    """Far past its cap, every String or ID argument (and input field) of every query and
    mutation is BAD_USER_INPUT naming the field; never INTERNAL, never stored."""
    field_def = root_fields(root)[field]
    variables = {
        name: _dummy(arg.type, name)
        for name, arg in field_def.args.items()
        if isinstance(arg.type, GraphQLNonNull) or name == path[0]
    }
    cap = MAX_STRING.get(path[-1].lower(), DEFAULT_MAX_STRING)
    huge = "x" * (cap + 1)
    if len(path) == 1:
        variables[path[0]] = (
            [huge] if isinstance(field_def.args[path[0]].type, GraphQLList) else huge
        )
    else:
        variables[path[0]][path[1]] = huge
    declared = ", ".join(f"${n}: {field_def.args[n].type}" for n in variables)
    passed = ", ".join(f"{n}: ${n}" for n in variables)
    selection = _selection(field_def.type)
    keyword = "query" if root == "Query" else "mutation"
    document = f"{keyword}({declared}) {{ {field}({passed}) {selection} }}"
    result = await SCHEMA.execute(
        document,
        variable_values=variables,
        context_value=request_context(world.settings, world.tokens["admin"]),
    )
    assert code(result) == "BAD_USER_INPUT", (document, result.errors)
    assert first_error(result).extensions.get("field") == path[-1], result.errors


@pytest.mark.parametrize(
    "document,variables",
    [
        # written in the document
        ('{{ generation(id: "{huge}") {{ id }} }}', {}),
        # a variable named unlike the argument it fills
        ("query($x: ID!) {{ generation(id: $x) {{ id }} }}", {"x": "{huge}"}),
        # a variable's default value
        ('query($x: ID! = "{huge}") {{ generation(id: $x) {{ id }} }}', {}),
        # behind a fragment on the root
        ('query {{ ...F }} fragment F on Query {{ generation(id: "{huge}") {{ id }} }}', {}),
        # an input field written inside an input object
        ('mutation {{ createGeneration(input: {{prompt: "{huge}"}}) {{ id }} }}', {}),
    ],
)
async def test_caps_follow_strings_however_they_arrive(world, document, variables):
    field = "prompt" if "createGeneration" in document else "id"
    huge = "x" * (MAX_STRING[field] + 1)
    result = await SCHEMA.execute(
        document.format(huge=huge),
        variable_values={k: v.format(huge=huge) for k, v in variables.items()},
        context_value=request_context(world.settings, world.tokens["other"]),
    )
    assert code(result) == "BAD_USER_INPUT", result.errors
    assert first_error(result).extensions.get("field") == field


NOT_TEXT = {"a NUL": "a\u0000b", "an unpaired surrogate": "a\ud800b"}


@pytest.mark.parametrize("what", NOT_TEXT)
@pytest.mark.parametrize(
    "root,field,path", string_inputs(), ids=lambda v: ".".join(v) if isinstance(v, list) else v
)
async def test_every_string_input_must_be_text(world, root, field, path, what):
    """A NUL (PostgreSQL cannot store it) or half a surrogate pair (no encoder takes it) in any
    String or ID argument is BAD_USER_INPUT naming the field, on either database."""
    result = await _execute_with(world, root, field, path, NOT_TEXT[what])
    assert code(result) == "BAD_USER_INPUT", result.errors
    assert first_error(result).extensions.get("field") == path[-1], result.errors
    assert "must be text" in first_error(result).message


async def _execute_with(world: Any, root: str, field: str, path: list[str], value: Any) -> Any:
    field_def = root_fields(root)[field]
    variables = {
        name: _dummy(arg.type, name)
        for name, arg in field_def.args.items()
        if isinstance(arg.type, GraphQLNonNull) or name == path[0]
    }
    if len(path) == 1:
        is_list = isinstance(field_def.args[path[0]].type, GraphQLList)
        variables[path[0]] = [value] if is_list else value
    else:
        variables[path[0]][path[1]] = value
    declared = ", ".join(f"${n}: {field_def.args[n].type}" for n in variables)
    passed = ", ".join(f"{n}: ${n}" for n in variables)
    keyword = "query" if root == "Query" else "mutation"
    document = f"{keyword}({declared}) {{ {field}({passed}) {_selection(field_def.type)} }}"
    return await SCHEMA.execute(
        document,
        variable_values=variables,
        context_value=request_context(world.settings, world.tokens["admin"]),
    )


@pytest.mark.parametrize(
    "document,variables",
    [
        ("query($s: [GenerationStatus!]) { generations(status: $s) { edges { cursor } } }", True),
        ("{{ generations(status: [{many}]) {{ edges {{ cursor }} }} }}", False),
        (
            "query($f: ErrorEventFilter) { errorEvents(filter: $f) { edges { cursor } } }",
            True,
        ),
    ],
)
async def test_lists_are_capped(world, document, variables):
    """40,000 statuses were 40,000 bound parameters, which PostgreSQL refuses (INTERNAL)."""
    if "GenerationStatus" in document:
        values: dict[str, Any] = {"s": ["QUEUED"] * 40_000}
    else:
        values = {"f": {"status": ["UNRESOLVED"] * 40_000}}
    text = document if variables else document.format(many=", ".join(["QUEUED"] * 101))
    result = await SCHEMA.execute(
        text,
        variable_values=values if variables else None,
        context_value=request_context(world.settings, world.tokens["admin"]),
    )
    assert code(result) == "BAD_USER_INPUT", result.errors
    assert first_error(result).extensions.get("field") == "status"
    assert f"at most {MAX_LIST_ITEMS} items" in first_error(result).message


async def test_a_large_variable_is_checked_once_however_often_it_is_passed(world):
    """Thirty aliases passing one filter of 100,000 keys walked them thirty times; an input
    object has a few fields, so so many keys are refused at once."""
    aliases = " ".join(f"a{i}: errorEvents(filter: $f) {{ edges {{ cursor }} }}" for i in range(30))
    junk = {f"k{i}": "x" for i in range(100_000)}
    with counted_calls(50_000) as calls:
        result = await SCHEMA.execute(
            f"query($f: ErrorEventFilter) {{ {aliases} }}",
            variable_values={"f": junk},
            context_value=request_context(world.settings, world.tokens["admin"]),
        )
    assert not calls.exceeded
    assert code(result) == "BAD_USER_INPUT", result.errors
    assert first_error(result).extensions.get("field") == "filter"


async def test_inputs_nested_past_the_schemas_depth_are_refused_without_recursion(world):
    """A variable's JSON may nest as deep as the decoder allows (orjson: 1,024 levels)."""
    deep: Any = "QUEUED"
    for _ in range(1_000):
        deep = [deep]
    result = await SCHEMA.execute(
        "query($s: [GenerationStatus!]) { generations(status: $s) { edges { cursor } } }",
        variable_values={"s": deep},
        context_value=request_context(world.settings, world.tokens["admin"]),
    )
    assert code(result) == "BAD_USER_INPUT", result.errors
    assert first_error(result).extensions.get("field") == "status"


MISSPELLED = [
    '{ generaton(id: "1") { id } }',  # a field
    "{ generations(frist: 2) { edges { cursor } } }",  # an argument
    "{ generations(status: [QUEUD]) { edges { cursor } } }",  # an enum value
    "{ errorEvents(filter: {severty: [ERROR]}) { edges { cursor } } }",  # an input field
    "query($s: [GenerationStatus!]) { generations(status: $s) { edges { cursor } } }",
    "{ generations { edges { nod { id } } } }",  # a field below the root
]


@pytest.mark.parametrize("document", MISSPELLED)
@pytest.mark.parametrize("introspection", [True, False])
async def test_no_suggestions_without_introspection(world, document, introspection):
    """ "Did you mean ...?" lists the schema's names: not to callers who may not read it."""
    settings = world.settings.model_copy(update={"introspection_enabled": introspection})
    schema = build_schema(settings)
    result = await schema.execute(
        document,
        variable_values={"s": ["QUEUD"]} if "$s" in document else None,
        context_value=request_context(settings, world.tokens["admin"]),
    )
    assert code(result) == "BAD_USER_INPUT", result.errors
    messages = " ".join(e.message for e in result.errors or ())
    assert ("Did you mean" in messages) is introspection, messages


def _selection(graphql_type: Any) -> str:
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return "{ __typename }" if hasattr(graphql_type, "fields") else ""


REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) { id } }"


async def test_a_burst_over_the_users_limit_is_rate_limited(world):
    settings = world.settings.model_copy(update={"rate_limit_per_user": 5})
    schema, counters = build_schema(settings), MemoryCounters()
    token = world.tokens["other"]
    for n in range(5):
        response = Response()
        ctx = request_context(settings, token, counters=counters)
        ctx.response = response
        result = await schema.execute(REVOKE, {"id": str(uuid.uuid4())}, context_value=ctx)
        assert code(result) == "NOT_FOUND"
        assert response.headers["RateLimit-Limit"] == "5"
        assert response.headers["RateLimit-Remaining"] == str(4 - n)
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
    response = Response()
    ctx = request_context(settings, token, counters=counters)
    ctx.response = response
    result = await schema.execute(REVOKE, {"id": str(uuid.uuid4())}, context_value=ctx)
    assert code(result) == "RATE_LIMITED"
    assert 1 <= first_error(result).extensions["retryAfter"] <= 60
    assert response.headers["RateLimit-Remaining"] == "0"
    # Queries count in a window of their own; another user has a window of their own.
    ok = await schema.execute(
        "{ me { id } }", context_value=request_context(settings, token, counters=counters)
    )
    assert ok.errors is None
    theirs = await schema.execute(
        REVOKE,
        {"id": str(uuid.uuid4())},
        context_value=request_context(settings, world.tokens["admin"], counters=counters),
    )
    assert code(theirs) == "NOT_FOUND"


ME = "{ me { id } }"


async def test_queries_are_rate_limited_apart_from_mutations(world):
    settings = world.settings.model_copy(
        update={"query_rate_limit_per_user": 3, "rate_limit_per_user": 1}
    )
    schema, counters = build_schema(settings), MemoryCounters()
    token = world.tokens["other"]

    async def run(document: str, variables: dict[str, Any] | None = None) -> Any:
        ctx = request_context(settings, token, counters=counters)
        ctx.response = Response()
        return await schema.execute(document, variables, context_value=ctx), ctx.response

    results = [await run(ME) for _ in range(3)]
    assert [r.errors for r, _ in results] == [None, None, None]
    assert [h.headers["RateLimit-Remaining"] for _, h in results] == ["2", "1", "0"]
    refused, response = await run(ME)
    assert code(refused) == "RATE_LIMITED"
    assert 1 <= first_error(refused).extensions["retryAfter"] <= 60
    assert response.headers["RateLimit-Limit"] == "3"
    # Every root field counts: two aliases are two queries.
    other = request_context(settings, world.tokens["admin"], counters=counters)
    assert (
        code(
            await schema.execute(
                "{ a: me { id } b: me { id } c: me { id } d: me { id } }", context_value=other
            )
        )
        == "RATE_LIMITED"
    )
    # A mutation spends its own window.
    changed, _ = await run(REVOKE, {"id": str(uuid.uuid4())})
    assert code(changed) == "NOT_FOUND"


async def test_anonymous_queries_are_limited_per_address(world):
    settings = world.settings.model_copy(update={"query_rate_limit_per_ip": 2})
    schema, counters = build_schema(settings), MemoryCounters()
    results = [
        await schema.execute(
            "{ models { id } }", context_value=request_context(settings, counters=counters)
        )
        for _ in range(3)
    ]
    assert [r.errors is None for r in results] == [True, True, False]
    assert code(results[2]) == "RATE_LIMITED"


async def test_aliased_mutations_each_count(world):
    settings = world.settings.model_copy(update={"rate_limit_per_user": 5})
    schema, counters = build_schema(settings), MemoryCounters()
    many = " ".join(f'm{i}: revokeApiKey(id: "{uuid.uuid4()}") {{ id }}' for i in range(6))
    result = await schema.execute(
        f"mutation {{ {many} }}",
        context_value=request_context(settings, world.tokens["other"], counters=counters),
    )
    assert code(result) == "RATE_LIMITED"


async def test_subscriptions_count_too(world):
    settings = world.settings.model_copy(update={"rate_limit_per_user": 1})
    schema, counters = build_schema(settings), MemoryCounters()
    first = await schema.subscribe(
        "subscription { creditBalanceChanged { available } }",
        context_value=request_context(settings, world.tokens["other"], counters=counters),
    )
    message = await first.__anext__()
    assert message.errors is None
    await first.aclose()
    second = await schema.subscribe(
        "subscription { creditBalanceChanged { available } }",
        context_value=request_context(settings, world.tokens["other"], counters=counters),
    )
    message = await second.__anext__()
    assert code(message) == "RATE_LIMITED"
    await second.aclose()


async def test_priority_users_get_the_higher_limit(world, backend):
    settings = world.settings.model_copy(
        update={"rate_limit_per_user": 1, "rate_limit_per_priority_user": 3}
    )
    schema, counters = build_schema(settings), MemoryCounters()
    premium = await auth.register(
        f"premium-{uuid.uuid4().hex[:8]}@example.com", PASSWORD, settings, role=Role.USER
    )
    await auth.set_priority(premium.id, True)
    token = auth.issue_token(premium, settings)
    codes = []
    for _ in range(4):
        result = await schema.execute(
            REVOKE,
            {"id": str(uuid.uuid4())},
            context_value=request_context(settings, token, counters=counters),
        )
        codes.append(code(result))
    assert codes == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND", "RATE_LIMITED"]


async def test_anonymous_callers_are_limited_per_address(world):
    settings = world.settings.model_copy(update={"rate_limit_per_ip": 2})
    schema, counters = build_schema(settings), MemoryCounters()
    login = 'mutation { login(email: "nobody@example.com", password: "wrong password") { token } }'
    codes = [
        code(
            await schema.execute(login, context_value=request_context(settings, counters=counters))
        )
        for _ in range(3)
    ]
    assert codes == ["UNAUTHENTICATED", "UNAUTHENTICATED", "RATE_LIMITED"]


def _cursor(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode()


FORGED_CURSORS = [
    _cursor("2024-01-01T00:00:00+00:00|" + "9" * 30),  # past 64 bits
    _cursor("2024-01-01T00:00:00+00:00|²"),  # a digit, but not an ASCII one
    _cursor("2024-01-01T00:00:00+00:00|not-a-uuid"),
    _cursor("2024-01-01T00:00:00|1"),  # naive time, integer id on a UUID connection
    _cursor("2024-01-01|x|y"),
    _cursor("9999-99-99|1"),
    "%%%",
]


@pytest.mark.parametrize("cursor", FORGED_CURSORS)
@pytest.mark.parametrize(
    "connection",
    ["generations", "creditTransactions", "notifications", "errorEvents", "apiCallLogs"],
)
async def test_forged_cursors_are_bad_user_input(world, connection, cursor):
    result = await SCHEMA.execute(
        f"query($a: String) {{ {connection}(after: $a) {{ edges {{ cursor }} }} }}",
        {"a": cursor},
        context_value=request_context(world.settings, world.tokens["admin"]),
    )
    # Refused as bad input, or (the integer-id cursor on an integer connection) a page.
    assert result.errors is None or code(result) == "BAD_USER_INPUT", result.errors
    if cursor != _cursor("2024-01-01T00:00:00|1") or connection == "generations":
        assert result.errors is not None and code(result) == "BAD_USER_INPUT"
