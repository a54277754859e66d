"""graphql-core's executor, with the value of each query and mutation root field completed by
a compiled projection (fastpath/projection.py) instead of field by field.

Root fields themselves still run through graphql-core and Strawberry: arguments, permission
classes, schema extensions and errors of the root resolver are unchanged. What is skipped is the
per-field machinery below them, which was ~40% of the CPU of a 20-generation page. A selection
the projection cannot reproduce exactly (see its module) is completed the normal way.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any

from graphql import GraphQLOutputType, GraphQLResolveInfo
from graphql.pyutils import Path, Undefined

from fastpath.internals import StrawberryGraphQLCoreExecutionContext
from fastpath.projection import Later, Unsupported, projection_of


def executor_kwargs(executor: type | None) -> dict[str, Any]:
    """The keyword that hands graphql-core's `execute`/`subscribe` Kiln's executor class:
    `executor_class` in graphql-core 3.3, the public name of the version pyproject.toml pins
    (Strawberry's own helper for it is private)."""
    return {} if executor is None else {"executor_class": executor}


@cache
def projecting(base: type[Any]) -> type[Any]:
    """`base` (Strawberry's executor or a subclass of it) with root fields completed by
    projections."""
    if base is StrawberryGraphQLCoreExecutionContext:
        return ProjectingExecutionContext
    assert issubclass(base, StrawberryGraphQLCoreExecutionContext), base
    return type(f"Projecting{base.__name__}", (ProjectingExecutionContext, base), {})


class ProjectingExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def complete_value(
        self,
        return_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        args = (return_type, field_details_list, info, path, result, position_context)
        # Only the outermost completion of a root field (graphql-core recurses into wrapped
        # types with the same path), and only for a value its resolver produced.
        if (
            path.prev is None
            and return_type is info.return_type
            and info.operation.operation.value != "subscription"
            and not isinstance(result, Exception)
            and result is not None
            and result is not Undefined
        ):
            projection = projection_of(info)
            if projection is not None:
                # A value that needs no wait (a page read with its outputs) is returned as
                # it is, with no coroutine for graphql-core to await.
                try:
                    completed = projection.completion(result, info.context)
                except Unsupported:
                    return super().complete_value(*args)
                if not isinstance(completed, Later):
                    return completed
                normally = partial(super().complete_value, *args)
                return _finish(completed, normally, self.is_awaitable)
        return super().complete_value(*args)


async def _finish(
    completing: Later,
    normally: Callable[[], Any],
    is_awaitable: Callable[[Any], bool],
) -> Any:
    try:
        return await completing
    except Unsupported:
        # An error below the root field, a null where the schema says non-null: graphql-core
        # completes it again and reports it with its path and extensions.code.
        completed = normally()
        if is_awaitable(completed):
            completed = await completed
        return completed
