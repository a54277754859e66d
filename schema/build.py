"""build_schema(): the one place the schema is assembled."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLResolveInfoHelpers
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

import fastpath
from fastpath.internals import StrawberryGraphQLCoreExecutionContext
from models.error_event import ErrorCategory, Severity
from resolvers import mutations, queries, subscriptions
from resolvers.accounts import AccountsMutation, AccountsQuery
from resolvers.errors import format_error
from resolvers.operations import OperationsMutation, OperationsQuery, OperationsSubscription
from resolvers.workflows import WorkflowMutation
from schema.security import security_extensions
from services.error_events import Occurrence, record, stack_of
from services.outages import as_unavailable, note_unavailable
from settings import Settings, get_settings

log = logging.getLogger("kiln.graphql")
_background: set[asyncio.Task[None]] = set()


class KilnSchema(strawberry.Schema):
    # What it was built with: the limits checked per operation read it.
    settings: Settings

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Every error leaves with an extensions.code; unexpected ones are masked, logged with
        their stack and recorded as error events, never shown to the client. An outage of a
        dependency (UNAVAILABLE) is counted and logged once a minute, not recorded: recording
        would need the database, and it is no new kind of error."""
        context: Any = execution_context.context if execution_context else None
        request_id = getattr(context, "request_id", "unknown")
        user_id = _caller_id(context)
        for error in errors:
            unexpected = format_error(error, request_id)
            if unexpected is None:
                original = error.original_error
                if original is not None and (outage := as_unavailable(original)) is not None:
                    note_unavailable(outage, original)
                continue
            log.error("unexpected error (request %s)", request_id, exc_info=unexpected)
            task = asyncio.get_running_loop().create_task(
                record(
                    Occurrence(
                        severity=Severity.ERROR,
                        category=ErrorCategory.API,
                        message=f"{type(unexpected).__name__}: {unexpected}",
                        error_code="INTERNAL",
                        request_id=request_id,
                        user_id=user_id,
                        function_name=".".join(str(p) for p in error.path or []) or None,
                        endpoint="/graphql",
                        stack_trace=stack_of(unexpected),
                    )
                )
            )
            # Recording must never hold up the response; keep a reference until it ends.
            _background.add(task)
            task.add_done_callback(_background.discard)


def _caller_id(context: Any) -> str | None:
    """The id of the caller the operation authenticated, if it did (never looked up here: an
    error is no reason for another round trip)."""
    operation_auth = getattr(context, "operation_auth", None)
    caller = operation_auth().caller if operation_auth is not None else None
    return str(caller.user.id) if caller is not None else None


# Each area keeps its own resolver classes; the schema's root types are their union.
Query = merge_types("Query", (queries.Query, OperationsQuery, AccountsQuery))
Mutation = merge_types(
    "Mutation", (mutations.Mutation, OperationsMutation, WorkflowMutation, AccountsMutation)
)
Subscription = merge_types("Subscription", (subscriptions.Subscription, OperationsSubscription))


class KilnExecution(StrawberryGraphQLCoreExecutionContext):
    """The executor of every operation. graphql-core's __init__ stores, on the executor, a
    named tuple of two of its own bound methods (`async_helpers`, which it hands to each
    field's info): a reference cycle that kept each operation's executor, context, caller and
    loaders alive until a full collection (bench/RESULTS.md, memory). Here the tuple is made
    when it is read instead, so an operation's objects are freed as soon as it is answered."""

    @property
    def async_helpers(self) -> GraphQLResolveInfoHelpers:
        return GraphQLResolveInfoHelpers(gather=self.gather_async_work, track=self.track_async_work)

    @async_helpers.setter
    def async_helpers(self, _: GraphQLResolveInfoHelpers) -> None:
        """graphql-core's __init__ assigns it; nothing is stored."""


class ExecutionWithoutSuggestions(KilnExecution):
    """Errors of variables and arguments without graphql-core's "Did you mean ...?" (they
    list the schema's names): the executor when introspection is off."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs["hide_suggestions"] = True
        return super().build(*args, **kwargs)


def executor(settings: Settings) -> type[StrawberryGraphQLCoreExecutionContext]:
    """Strawberry's executor, without suggestions when introspection is off, and with root
    fields completed by projections when the fast path is on (fastpath/execution.py)."""
    base = KilnExecution if settings.introspection_enabled else ExecutionWithoutSuggestions
    return fastpath.executor(base) if settings.fast_path_enabled else base


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """With the document limits, input caps and rate limits of `settings` (the process's
    settings when not given)."""
    settings = settings or get_settings()
    schema = KilnSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=list(security_extensions(settings)),
        execution_context_class=executor(settings),
    )
    schema.settings = settings
    return schema
