"""Permission classes. They raise domain errors, which resolvers/errors.py turns into codes."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from models.user import Role
from services.errors import Forbidden


class IsAuthenticated(BasePermission):
    message = "Sign in to do this."

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        await info.context.require_user()
        return True


ADMINS_ONLY = "Admins only."


class IsAdmin(BasePermission):
    message = ADMINS_ONLY

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        user = await info.context.require_user()
        if user.role is not Role.ADMIN:
            raise Forbidden(ADMINS_ONLY)
        # On a socket, a subscription that got this far ends if the role goes.
        info.context.needs_admin()
        return True
