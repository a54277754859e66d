"""A Strawberry extension that measures every GraphQL operation: counts by operation type and
outcome code, latency of queries and mutations, live subscriptions, and the caller's id in the
log context. The server attaches it to the schema it serves."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from strawberry.extensions import SchemaExtension

from observability import logs, metrics


class GraphQLObservability(SchemaExtension):
    _subscribed = False

    async def on_operation(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            operation = self._operation_type()
            metrics.GRAPHQL_REQUESTS.labels(operation, self._outcome()).inc()
            if self._subscribed:
                metrics.ACTIVE_SUBSCRIPTIONS.dec()
            elif operation != "subscription":
                metrics.GRAPHQL_LATENCY.labels(operation).observe(time.perf_counter() - started)

    async def on_execute(self) -> AsyncIterator[None]:
        # Parsed and validated by now. Knowing the caller here puts their id on every log line
        # of the operation; a bad credential is left for the resolvers to report.
        lookup = getattr(self.execution_context.context, "user", None)
        if callable(lookup):
            try:
                user = await lookup()
            except Exception:
                user = None
            if user is not None:
                logs.bind(user_id=user.id)
        if self._operation_type() == "subscription" and not self._subscribed:
            self._subscribed = True
            metrics.ACTIVE_SUBSCRIPTIONS.inc()
        yield

    def _operation_type(self) -> str:
        try:
            return str(self.execution_context.operation_type.value)
        except Exception:
            return "unknown"  # the document did not parse

    def _outcome(self) -> str:
        """OK, or the code of the first error (already set by the schema's error mapping)."""
        context = self.execution_context
        result: Any = context.result
        errors = getattr(result, "errors", None) or context.pre_execution_errors or []
        if not errors:
            return "OK"
        extensions = getattr(errors[0], "extensions", None) or {}
        return str(extensions.get("code", "INTERNAL"))
