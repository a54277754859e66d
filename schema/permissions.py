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


class IsAdmin(BasePermission):
    message = "Admins only."

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        user = await info.context.require_user()
        if user.role is not Role.ADMIN:
            raise Forbidden("Admins only.")
        return True
