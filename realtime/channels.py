"""Channel names. A generation's changes go to its own channel and to its owner's.

Every name starts with the deployment's namespace (REDIS_NAMESPACE), so several Kiln
deployments, or test runs, can share one Redis."""

from __future__ import annotations

import uuid

_namespace = "kiln"


def configure(namespace: str) -> None:
    global _namespace
    _namespace = namespace


def generation(generation_id: uuid.UUID | str) -> str:
    return f"{_namespace}:generation:{generation_id}"


def user_generations(user_id: uuid.UUID | str) -> str:
    return f"{_namespace}:user:{user_id}:generations"


def user_credits(user_id: uuid.UUID | str) -> str:
    return f"{_namespace}:user:{user_id}:credits"


def user_notifications(user_id: uuid.UUID | str) -> str:
    return f"{_namespace}:user:{user_id}:notifications"


def admin_errors() -> str:
    return f"{_namespace}:admin:errors"
