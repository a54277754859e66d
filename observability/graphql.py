"""A Strawberry extension that measures every GraphQL operation: counts by operation type and
outcome code, latency of queries and mutations, live subscriptions, and the caller's id in the
log context. The server attaches it to the schema it serves; prepared operations
(fastpath/prepared.py) call the same two functions without the extension machinery."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from observability import logs, metrics


async def bind_caller(execution: ExecutionContext) -> None:
    """Puts the caller's id on every log line of the operation (parsed and validated by now);
    a bad credential is left for the resolvers to report."""
    lookup = getattr(execution.context, "user", None)
    if callable(lookup):
        try:
            user = await lookup()
        except Exception:
            user = None
        if user is not None:
            logs.bind(user_id=user.id)


def record_operation(execution: ExecutionContext, started: float) -> None:
    """Counts a finished operation by outcome; a query's or mutation's latency is observed too
    (a subscription's would be how long it stayed open)."""
    operation = operation_type(execution)
    metrics.GRAPHQL_REQUESTS.labels(operation, _outcome(execution)).inc()
    if operation != "subscription":
        metrics.GRAPHQL_LATENCY.labels(operation).observe(time.perf_counter() - started)


def operation_type(execution: ExecutionContext) -> str:
    try:
        return str(execution.operation_type.value)
    except Exception:
        return "unknown"  # the document did not parse


def _outcome(execution: ExecutionContext) -> str:
    """OK, or the code of the first error (already set by the schema's error mapping)."""
    result: Any = execution.result
    errors = getattr(result, "errors", None) or execution.pre_execution_errors or []
    if not errors:
        return "OK"
    extensions = getattr(errors[0], "extensions", None) or {}
    return str(extensions.get("code", "INTERNAL"))


class GraphQLObservability(SchemaExtension):
    _subscribed = False

    async def on_operation(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            record_operation(self.execution_context, started)
            if self._subscribed:
                metrics.ACTIVE_SUBSCRIPTIONS.dec()

    async def on_execute(self) -> AsyncIterator[None]:
        await bind_caller(self.execution_context)
        if operation_type(self.execution_context) == "subscription" and not self._subscribed:
            self._subscribed = True
            metrics.ACTIVE_SUBSCRIPTIONS.inc()
        yield
