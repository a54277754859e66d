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


# What a channel of states carries (realtime/catch_up.py re-reads them by these).
GENERATION = "generation"
USER_GENERATIONS = "user-generations"
USER_CREDITS = "user-credits"


def of_state(name: str) -> tuple[str, uuid.UUID] | None:
    """(what, id) of a channel that carries the versioned state of a row: one generation, a
    user's generations, a user's balance. None for channels of events (notifications, error
    groups), which carry no state to re-read, and for names of another namespace."""
    prefix = f"{_namespace}:"
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split(":")
    try:
        if len(parts) == 2 and parts[0] == "generation":
            return GENERATION, uuid.UUID(parts[1])
        if len(parts) == 3 and parts[0] == "user" and parts[2] == "generations":
            return USER_GENERATIONS, uuid.UUID(parts[1])
        if len(parts) == 3 and parts[0] == "user" and parts[2] == "credits":
            return USER_CREDITS, uuid.UUID(parts[1])
    except ValueError:  # not an id: nothing Kiln publishes
        return None
    return None
