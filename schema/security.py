"""Schema extensions that keep one caller from flooding or breaking the API: operation rate
limits, input length caps, and the document limits (depth, aliases, tokens, bounded caches,
introspection), all configured from settings."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from services import rate_limits
from services.errors import BadUserInput, DomainError, RateLimited
from settings import Settings

# Longest accepted string per argument or input field (compared without case or
# underscores); any other string input gets DEFAULT_MAX_STRING. Services check the exact
# rules (email syntax, prompt length, ...); these caps make sure nothing unbounded reaches
# them, the database or a log line.
MAX_STRING = {
    "id": 64,
    "userid": 64,
    "generationid": 64,
    "after": 256,
    "email": 254,
    "password": 256,
    "name": 100,
    "reason": 255,
    "notes": 4000,
    "feedback": 4000,
    "prompt": 4000,
    "negativeprompt": 4000,
    "idempotencykey": 255,
    "inputimageurl": 2048,
    "model": 120,
    "preset": 120,
    "provider": 64,
}
DEFAULT_MAX_STRING = 4000


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _check(name: str, value: str) -> None:
    cap = MAX_STRING.get(name.replace("_", "").lower(), DEFAULT_MAX_STRING)
    if len(value) > cap:
        field = _camel(name)
        raise BadUserInput(f"{field} must be at most {cap} characters.", field=field)


def check_inputs(values: dict[str, Any]) -> None:
    """Raise BadUserInput (naming the field) for any string longer than its cap."""

    def walk(name: str, value: Any) -> None:
        if isinstance(value, str):
            _check(name, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(str(key), item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(name, item)

    for key, value in values.items():
        walk(key, value)


def _operation(context: ExecutionContext) -> OperationDefinitionNode | None:
    document = context.graphql_document
    if document is None:
        return None
    name = context.operation_name
    return next(
        (
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (name is None or (d.name is not None and d.name.value == name))
        ),
        None,
    )


def _root_fields(context: ExecutionContext) -> list[FieldNode]:
    """The operation's root fields, through fragments, aliases included."""
    operation = _operation(context)
    if operation is None or context.graphql_document is None:
        return []
    fragments = {
        d.name.value: d.selection_set
        for d in context.graphql_document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    found: list[FieldNode] = []

    def collect(selection_set: SelectionSetNode, seen: frozenset[str]) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                target = selection.name.value
                if target in fragments and target not in seen:
                    collect(fragments[target], seen | {target})

    collect(operation.selection_set, frozenset())
    return found


def check_operation_inputs(context: ExecutionContext) -> None:
    """Caps every string reaching a root field, written in the document or sent as a
    variable, under the name of the argument or input field it fills."""
    operation = _operation(context)
    if operation is None:
        return
    variables = context.variables or {}
    defaults = {
        d.variable.name.value: d.default_value for d in operation.variable_definitions or ()
    }

    def walk(name: str, node: ValueNode) -> None:
        if isinstance(node, VariableNode):
            variable = node.name.value
            if variable in variables:
                check_inputs({name: variables[variable]})
            elif defaults.get(variable) is not None:
                walk(name, defaults[variable])  # type: ignore[arg-type]
        elif isinstance(node, StringValueNode):
            _check(name, node.value)
        elif isinstance(node, ObjectValueNode):
            for field in node.fields:
                walk(field.name.value, field.value)
        elif isinstance(node, ListValueNode):
            for item in node.values:
                walk(name, item)

    for root in _root_fields(context):
        for argument in root.arguments or ():
            walk(argument.name.value, argument.value)


class InputLimits(SchemaExtension):
    """Caps every string argument of every root field before any resolver runs.

    Checked once per operation from the document and its variables rather than in a
    per-field `resolve` hook: such a hook wraps every field of every result (a page of
    twenty generations is hundreds of fields), which cost reads most of their speed."""

    def on_execute(self) -> Iterator[None]:
        check_operation_inputs(self.execution_context)
        yield


def root_field_count(context: ExecutionContext) -> int:
    """How many root fields the operation runs (aliases and fragments included): each one is
    a mutation or subscription of its own, so each counts against the rate limit."""
    return max(1, len(_root_fields(context)))


class OperationRateLimit(SchemaExtension):
    """Mutations and subscriptions count against the caller's window (services.rate_limits).
    Over the limit the whole operation is refused with RATE_LIMITED and retryAfter; HTTP
    responses carry RateLimit-Limit / -Remaining / -Reset."""

    async def on_execute(self) -> Any:
        await spend_rate_limit(self.execution_context)
        yield


async def spend_rate_limit(execution: ExecutionContext) -> None:
    """What OperationRateLimit does for an operation (prepared operations call it directly)."""
    if execution.operation_type not in (OperationType.MUTATION, OperationType.SUBSCRIPTION):
        return
    context: Any = execution.context
    counters = getattr(context, "counters", None)
    settings: Settings | None = getattr(context, "settings", None)
    if counters is None or settings is None:
        return
    try:
        user = await context.user()
    except DomainError:
        user = None  # a bad credential: the resolver reports it; count by address
    try:
        quota = await rate_limits.spend(
            counters, user, context.client_ip, root_field_count(execution), settings
        )
    except RateLimited as limited:
        limit = rate_limits.operation_limit(user, settings)
        _set_headers(context, rate_limits.Quota(limit, 0, limited.retry_after))
        raise
    _set_headers(context, quota)


def _set_headers(context: Any, quota: rate_limits.Quota) -> None:
    headers = getattr(getattr(context, "response", None), "headers", None)
    if headers is None or not hasattr(headers, "__setitem__"):
        return  # a socket: the protocol has no headers per operation
    headers["RateLimit-Limit"] = str(quota.limit)
    headers["RateLimit-Remaining"] = str(max(0, quota.remaining))
    headers["RateLimit-Reset"] = str(quota.reset_after)


def security_extensions(settings: Settings) -> Iterator[Any]:
    """The schema's protective extensions, as factories (one instance per operation).

    The depth, alias and introspection rules are built once here and shared by every
    operation: Strawberry's own limiter extensions build a fresh rule class per operation,
    which makes every validation a cache miss (validation was a third of the API's CPU)."""
    size = settings.graphql_cache_size
    rules: list[type[ASTValidationRule]] = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    if not settings.introspection_enabled:
        rules.append(NoSchemaIntrospectionCustomRule)
    yield functools.partial(ParserCache, maxsize=size)
    yield functools.partial(ValidationCache, maxsize=size)
    yield functools.partial(MaxTokensLimiter, max_token_count=settings.max_query_tokens)
    yield functools.partial(AddValidationRules, rules)
    yield InputLimits
    yield OperationRateLimit
