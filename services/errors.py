"""Domain exceptions. resolvers/errors.py maps each class to a GraphQL error code."""

from __future__ import annotations

from enum import StrEnum


class DomainError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthFailure(StrEnum):
    """Why a credential was refused. A socket's 4403 close reason starts with it, so a client
    can tell a token to refresh from a request to fix."""

    MISSING = "missing"
    MALFORMED = "malformed"  # not `Bearer <token>`, or not a token at all
    INVALID = "invalid"  # a signature that does not check out, a key never issued
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN_USER = "unknown user"  # well signed, but the account is gone


class Unauthenticated(DomainError):
    def __init__(
        self, message: str = "Sign in to do this.", reason: AuthFailure = AuthFailure.MISSING
    ) -> None:
        super().__init__(message)
        self.reason = reason


class Forbidden(DomainError):
    def __init__(self, message: str = "You are not allowed to do this.") -> None:
        super().__init__(message)


class BadUserInput(DomainError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(DomainError):
    pass


class InsufficientCredits(DomainError):
    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"This needs {needed} credits; {available} available.")
        self.needed = needed
        self.available = available


class Conflict(DomainError):
    pass


class InvalidTransition(Conflict):
    pass


class RateLimited(DomainError):
    def __init__(self, retry_after: int, message: str = "Too many requests.") -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (the database, Redis, the broker) did not answer: nothing is wrong with
    the request, and it may succeed if sent again after `retry_after` seconds. Made from
    connection-level failures by services.outages.as_unavailable."""

    def __init__(
        self,
        dependency: str,
        retry_after: int,
        message: str = "Kiln cannot reach one of its services right now; try again shortly.",
    ) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.retry_after = retry_after
