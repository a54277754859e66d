"""Schema extensions that keep one caller from flooding or breaking the API: the document limits
(tokens; depth, aliases, field merging and suggestions in schema/documents.py's validator; bounded
caches of valid documents), the input caps, the result-size budget and the rate limits, all
configured from settings.

Everything here costs time linear in the document and its variables (schema/document_limits.py,
schema/field_merging.py): a document within the token and body caps is answered or refused
without a walk that follows every spread of every fragment.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import AddValidationRules, MaxTokensLimiter, SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from fastpath.internals import graphql_schema
from schema.document_limits import operation_named, result_size, root_fields
from schema.documents import DocumentParsing, DocumentValidation, DocumentValidator, ValidDocuments
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
# Most items of any list input: the schema's lists are filters over enums of at most a dozen
# values. 40,000 statuses became 40,000 bound parameters, which PostgreSQL refuses.
MAX_LIST_ITEMS = 100
# Deepest nesting of input objects and lists in an argument (the schema's go two deep). A
# variable's JSON may nest a thousand levels; nothing walks deeper than this.
MAX_INPUT_DEPTH = 8
# NUL, which PostgreSQL cannot store in text, and halves of surrogate pairs, which are not
# Unicode text at all (no encoder, driver or log line takes them).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _check(name: str, value: str) -> None:
    cap = MAX_STRING.get(name.replace("_", "").lower(), DEFAULT_MAX_STRING)
    if len(value) > cap:
        field = _camel(name)
        raise BadUserInput(f"{field} must be at most {cap} characters.", field=field)
    found = _NOT_TEXT.search(value)
    if found is not None:
        field = _camel(name)
        what = "NUL characters" if found.group() == "\x00" else "unpaired surrogates"
        raise BadUserInput(f"{field} must be text without {what}.", field=field)


def _check_list(name: str, length: int) -> None:
    """A list (or an input object: none has as many fields) of at most MAX_LIST_ITEMS."""
    if length > MAX_LIST_ITEMS:
        field = _camel(name)
        raise BadUserInput(f"{field} takes at most {MAX_LIST_ITEMS} items.", field=field)


def _too_deep(name: str) -> BadUserInput:
    field = _camel(name)
    return BadUserInput(f"{field} is nested too deeply.", field=field)


def check_inputs(values: Mapping[str, Any]) -> None:
    """Raise BadUserInput (naming the field) for any string longer than its cap or with
    characters that are not text, any list longer than MAX_LIST_ITEMS, and nesting deeper
    than MAX_INPUT_DEPTH. Iterative: a variable may nest as deep as its JSON allows."""
    stack: list[tuple[str, Any, int]] = [(str(k), v, 0) for k, v in reversed(list(values.items()))]
    while stack:
        name, value, depth = stack.pop()
        if isinstance(value, str):
            _check(name, value)
        elif isinstance(value, dict):
            _check_list(name, len(value))  # no input object has a hundred fields
            if depth >= MAX_INPUT_DEPTH:
                raise _too_deep(name)
            stack.extend((str(k), item, depth + 1) for k, item in reversed(list(value.items())))
        elif isinstance(value, list | tuple):
            _check_list(name, len(value))
            if depth >= MAX_INPUT_DEPTH:
                raise _too_deep(name)
            stack.extend((name, item, depth + 1) for item in reversed(value))


def _operation(context: ExecutionContext) -> OperationDefinitionNode | None:
    document = context.graphql_document
    if document is None:
        return None
    return operation_named(document, context.operation_name)


def _root_fields(context: ExecutionContext) -> list[FieldNode]:
    """The operation's root fields, through fragments (each entered once), aliases included."""
    operation = _operation(context)
    if operation is None or context.graphql_document is None:
        return []
    return root_fields(context.graphql_document, operation)


def check_operation_inputs(context: ExecutionContext) -> None:
    """Caps every string and list reaching a root field, written in the document or sent as a
    variable, under the name of the argument or input field it fills."""
    operation = _operation(context)
    if operation is None:
        return
    inputs = _OperationInputs(
        context.variables or {},
        {d.variable.name.value: d.default_value for d in operation.variable_definitions or ()},
    )
    for root in _root_fields(context):
        for argument in root.arguments or ():
            inputs.walk(argument.name.value, argument.value)


class _OperationInputs:
    """The walk of one operation's arguments. A method, not a closure that calls itself: such
    a closure is a reference cycle (function -> cell -> function), left to the garbage
    collector once per operation with everything it holds."""

    def __init__(self, variables: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self.variables = variables
        self.defaults = defaults
        self.checked: set[tuple[str, str]] = set()

    def walk(self, name: str, node: ValueNode) -> None:
        if isinstance(node, VariableNode):
            variable = node.name.value
            if (name, variable) in self.checked:
                return  # thirty aliases passing one large variable: checked once
            self.checked.add((name, variable))
            if variable in self.variables:
                check_inputs({name: self.variables[variable]})
            elif self.defaults.get(variable) is not None:
                self.walk(name, self.defaults[variable])
        elif isinstance(node, StringValueNode):
            _check(name, node.value)
        elif isinstance(node, ObjectValueNode):
            for field in node.fields:
                self.walk(field.name.value, field.value)
        elif isinstance(node, ListValueNode):
            _check_list(name, len(node.values))
            for item in node.values:
                self.walk(name, item)


class InputLimits(SchemaExtension):
    """Caps every string and list argument of every root field before any resolver runs.

    Checked once per operation from the document and its variables rather than in a
    per-field `resolve` hook: such a hook wraps every field of every result (a page of
    twenty generations is hundreds of fields), which cost reads most of their speed."""

    def on_execute(self) -> Iterator[None]:
        check_operation_inputs(self.execution_context)
        yield


_DEFAULT_RESULT_OBJECTS: int = Settings.model_fields["max_result_objects"].default


def check_result_budget(execution: ExecutionContext) -> None:
    """Refuses an operation whose result could hold more than MAX_RESULT_OBJECTS objects
    (schema/document_limits.py: result_size, LIST_BOUNDS), before anything runs."""
    operation = _operation(execution)
    document = execution.graphql_document
    if operation is None or document is None:
        return
    # The settings the schema was built with, as for the other document limits.
    settings: Settings | None = getattr(execution.schema, "settings", None)
    limit = settings.max_result_objects if settings is not None else _DEFAULT_RESULT_OBJECTS
    size = _result_size(graphql_schema(execution.schema), document, operation, execution.variables)
    if size > limit:
        raise BadUserInput(
            f"This operation's result could hold {size} objects; at most {limit} are allowed."
            " Ask for smaller pages (first) or fewer nested lists."
        )


# Sizes of recent (document, operation, variables): a document that validated once is kept
# and sent again and again (pages, polls), and its size depends on nothing else.
_SIZES: OrderedDict[tuple[int, int, str | None, Any], tuple[DocumentNode, int]] = OrderedDict()
_SIZES_KEPT = 512


def _result_size(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
) -> int:
    try:
        # Variables that are not all hashable (input objects, lists) are not remembered.
        key = (
            id(schema),
            id(document),
            operation.name.value if operation.name else None,
            tuple(sorted((variables or {}).items())),
        )
        hash(key)
    except TypeError:
        return result_size(schema, document, operation, variables)
    kept = _SIZES.get(key)
    if kept is not None and kept[0] is document:  # not another document at a reused id
        _SIZES.move_to_end(key)
        return kept[1]
    size = result_size(schema, document, operation, variables)
    _SIZES[key] = (document, size)
    if len(_SIZES) > _SIZES_KEPT:
        _SIZES.popitem(last=False)
    return size


class ResultBudget(SchemaExtension):
    """Whatever its lists hold, an operation's result stays within MAX_RESULT_OBJECTS."""

    def on_execute(self) -> Iterator[None]:
        check_result_budget(self.execution_context)
        yield


def root_field_count(context: ExecutionContext) -> int:
    """How many root fields the operation runs (aliases and fragments included): each one is
    an operation of its own, so each counts against the rate limit."""
    return max(1, len(_root_fields(context)))


class OperationRateLimit(SchemaExtension):
    """Every operation counts against the caller's window (services.rate_limits): queries
    against one, mutations and subscriptions against another with smaller budgets. Over the
    limit the whole operation is refused with RATE_LIMITED and retryAfter; HTTP responses
    carry RateLimit-Limit / -Remaining / -Reset."""

    async def on_execute(self) -> Any:
        await spend_rate_limit(self.execution_context)
        yield


_CHANGES = (OperationType.MUTATION, OperationType.SUBSCRIPTION)


async def spend_rate_limit(execution: ExecutionContext) -> None:
    """What OperationRateLimit does for an operation (prepared operations call it directly)."""
    operation_type = execution.operation_type
    if operation_type not in (OperationType.QUERY, *_CHANGES):
        return
    reads = operation_type is OperationType.QUERY
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
            counters,
            user,
            context.client_ip,
            root_field_count(execution),
            settings,
            reads=reads,
        )
    except RateLimited as limited:
        limit = rate_limits.operation_limit(user, settings, reads=reads)
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

    The document caches, the validator and the introspection rule are built once here and
    shared by every operation: Strawberry's own limiter extensions build a fresh rule class
    per operation, which makes every validation a cache miss (validation was a third of the
    API's CPU)."""
    rules: list[type[ASTValidationRule]] = []
    if not settings.introspection_enabled:
        rules.append(NoSchemaIntrospectionCustomRule)
    documents = ValidDocuments(settings.graphql_cache_size, settings.graphql_cache_chars)
    yield functools.partial(DocumentParsing, documents)
    yield functools.partial(DocumentValidation, DocumentValidator(settings), documents)
    yield functools.partial(MaxTokensLimiter, max_token_count=settings.max_query_tokens)
    if rules:
        yield functools.partial(AddValidationRules, rules)
    yield InputLimits
    yield ResultBudget
    yield OperationRateLimit
