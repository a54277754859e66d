"""Running one GraphQL operation as a user."""

from __future__ import annotations

from schema.build import build_schema
from services import auth
from tests.support.schema import request_context


async def run(backend, user, query: str, **variables):
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    return await build_schema().execute(query, variable_values=variables, context_value=context)
