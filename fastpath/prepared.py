"""Prepared operations: a query or mutation whose document already parsed and validated once
through Strawberry is executed again without Strawberry's per-operation machinery.

Strawberry builds an execution context, an instance of every extension and a chain of hook
context managers for each operation, although for a document it has seen the parse and
validation hooks only look their answers up in caches. That was about a fifth of the API's
CPU for a page of generations or a `createGeneration` (bench/RESULTS.md, fourth pass). A
prepared operation runs the same per-operation work as plain function calls, in the schema's
extension order, then graphql-core with the schema's execution context class, and its errors
through the schema's error processing: the response is the one Strawberry would give.

Only a schema whose every extension is accounted for is served this way: an extension whose
work is all on the document (parsing, validation) has nothing left to do for a prepared one,
and each other extension must name the function that does its per-operation work. A schema
with anything else (an unknown extension, one hooking every field, custom directives) is
always served by Strawberry, and so is every document not yet seen.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import DocumentNode, GraphQLError, execute
from strawberry import Schema
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from fastpath.execution import executor_kwargs
from fastpath.internals import (
    PreExecutionError,
    get_operation_type,
    graphql_schema,
    optimized_is_awaitable,
    process_errors,
)

# What an extension does for every operation, as a function of the operation.
Hook = Callable[[ExecutionContext], Awaitable[None] | None]

# Their work is on the document only: a prepared document has passed them.
_DOCUMENT_ONLY: tuple[type[SchemaExtension], ...] = (
    ParserCache,
    ValidationCache,
    MaxTokensLimiter,
    AddValidationRules,
)
_SERVED = (OperationType.QUERY, OperationType.MUTATION)


@dataclass(frozen=True, slots=True)
class Prepared:
    document: DocumentNode
    operation_type: OperationType


class PreparedOperations:
    """The documents seen to parse and validate, by their text, at most `maxsize` of them, the
    oldest forgotten first. Validation covers every operation of a document, so any of them
    can then be run by name."""

    def __init__(self, schema: Schema, hooks: list[Hook] | None, maxsize: int) -> None:
        self.schema = schema
        # None: the schema has an extension this module cannot stand in for.
        self.hooks = hooks
        self.maxsize = maxsize
        self._documents: dict[str, DocumentNode] = {}
        self._run_kwargs = executor_kwargs(schema.execution_context_class)

    @classmethod
    def attach(
        cls, schema: Schema, per_operation: Mapping[type[SchemaExtension], Hook], maxsize: int
    ) -> PreparedOperations:
        """Prepared operations for `schema`, which from now on remembers every document that
        validates. `per_operation` names, for each extension of the schema that is
        not about the document alone, the function doing its work."""
        hooks = None if schema.directives else _hooks(schema.extensions, per_operation)
        operations = cls(schema, hooks, maxsize)
        schema.extensions = (*schema.extensions, functools.partial(_Remember, operations))
        return operations

    def get(self, query: str, operation_name: str | None) -> Prepared | None:
        """The query or mutation `operation_name` picks in a document seen before; None when
        the document is new or Strawberry must answer (no such operation, a subscription)."""
        document = self._documents.get(query) if self.hooks is not None else None
        if document is None:
            return None
        try:
            operation_type = get_operation_type(document, operation_name)
        except RuntimeError:
            return None
        return Prepared(document, operation_type) if operation_type in _SERVED else None

    def remember(self, execution: ExecutionContext) -> None:
        query, document = execution.query, execution.graphql_document
        if self.hooks is None or document is None or not query or query in self._documents:
            return
        if len(self._documents) >= self.maxsize:
            del self._documents[next(iter(self._documents))]
        self._documents[query] = document

    def execution(
        self,
        prepared: Prepared,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Any,
        extensions: dict[str, Any] | None = None,
    ) -> ExecutionContext:
        execution = ExecutionContext(
            query=query,
            schema=self.schema,
            allowed_operations=(prepared.operation_type,),
            context=context,
            variables=variables,
            provided_operation_name=operation_name,
            operation_extensions=extensions,
        )
        execution.graphql_document = prepared.document
        return execution

    async def execute(self, execution: ExecutionContext) -> ExecutionResult:
        """Runs the per-operation hooks, then the operation; sets `execution.result`.
        Errors, raised by a hook or during execution, are processed as Strawberry does."""
        assert self.hooks is not None and execution.graphql_document is not None
        result: ExecutionResult
        try:
            for hook in self.hooks:
                pending = hook(execution)
                if pending is not None:
                    await pending
        except Exception as error:
            coerced = error if isinstance(error, GraphQLError) else _graphql_error(error)
            result = PreExecutionError(data=None, errors=[coerced])
            execution.pre_execution_errors = result.errors
        else:
            outcome = execute(
                graphql_schema(self.schema),
                execution.graphql_document,
                context_value=execution.context,
                variable_values=execution.variables,
                operation_name=execution.operation_name,
                # As Strawberry passes it: a cheaper check than inspect's for most values.
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
                # The request's `extensions`, as resolvers see them (`info.operation_extensions`).
                operation_extensions=execution.operation_extensions,
                **self._run_kwargs,
            )
            if inspect.isawaitable(outcome):
                outcome = await outcome
            result = ExecutionResult(data=outcome.data, errors=outcome.errors)
        if result.errors:
            process_errors(self.schema, result.errors, execution)
        execution.result = result
        return result


def _graphql_error(error: Exception) -> GraphQLError:
    return GraphQLError(str(error), original_error=error)


def _hooks(
    extensions: Any, per_operation: Mapping[type[SchemaExtension], Hook]
) -> list[Hook] | None:
    hooks: list[Hook] = []
    for extension in extensions:
        kind = _extension_class(extension)
        if kind is None or kind.resolve is not SchemaExtension.resolve:
            return None  # unknown, or it hooks every field
        if issubclass(kind, _DOCUMENT_ONLY):
            continue
        hook = next((h for k, h in per_operation.items() if issubclass(kind, k)), None)
        if hook is None:
            return None
        hooks.append(hook)
    return hooks


def _extension_class(extension: Any) -> type[SchemaExtension] | None:
    """The class an extension entry makes: a class, or a factory partial of one."""
    while isinstance(extension, functools.partial):
        extension = extension.func
    if isinstance(extension, type) and issubclass(extension, SchemaExtension):
        return extension
    return None


class _Remember(SchemaExtension):
    """Remembers a document once it parsed and validated (whatever its execution does)."""

    def __init__(self, operations: PreparedOperations) -> None:
        self.operations = operations

    def on_validate(self) -> Iterator[None]:
        yield
        if not self.execution_context.pre_execution_errors:
            self.operations.remember(self.execution_context)
