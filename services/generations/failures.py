"""Why a generation failed: the codes a FAILED generation carries (its `error.code` in the
API), what each tells its owner, and the one sentence that says the credits came back."""

from __future__ import annotations

from enum import StrEnum

from models.error_event import ErrorCategory, Severity
from models.generation import Generation
from providers import base as providers
from providers.base import ProviderError
from services.error_events import Occurrence, stack_of


class FailureCode(StrEnum):
    # Kiln's own fault: a crash while running it.
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # Its model left the catalogue while it waited.
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    # The user's input image could not be fetched (refused, unreachable, too slow).
    INPUT_IMAGE_UNAVAILABLE = "INPUT_IMAGE_UNAVAILABLE"
    # A provider declined it under its content policy (never failed over: every provider
    # would be asked the same).
    CONTENT_REJECTED = providers.CONTENT_REJECTED
    # Every route of its model failed after its retries.
    ALL_PROVIDERS_FAILED = "ALL_PROVIDERS_FAILED"
    # A provider reported a failure that ends the generation.
    PROVIDER_ERROR = "PROVIDER_ERROR"
    # It ran past its model's time limit and the sweeper stopped it.
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    # One view of a multi-view workflow failed, so the workflow did.
    WORKFLOW_VIEW_FAILED = "WORKFLOW_VIEW_FAILED"


# What the owner reads when nothing more specific is said (before `refunded`).
_WHAT: dict[FailureCode, str] = {
    FailureCode.INTERNAL_ERROR: "Something went wrong on our side.",
    FailureCode.MODEL_UNAVAILABLE: "This model is no longer offered.",
    FailureCode.INPUT_IMAGE_UNAVAILABLE: "We could not fetch your input image.",
    FailureCode.CONTENT_REJECTED: ("The provider declined this request under its content policy."),
    FailureCode.ALL_PROVIDERS_FAILED: "Every provider for this model failed.",
    FailureCode.PROVIDER_ERROR: "The provider could not make it.",
    FailureCode.PROVIDER_TIMEOUT: "The generation took too long and was stopped.",
    FailureCode.WORKFLOW_VIEW_FAILED: "A view could not be made.",
}

# How loud the error event of each failure is; the user's own input is a warning.
_SEVERITY: dict[FailureCode, Severity] = {
    FailureCode.INPUT_IMAGE_UNAVAILABLE: Severity.WARNING,
}


def refunded(what: str) -> str:
    """The message of a failed generation: what happened, and that its held credits came
    back (a failure always releases the hold)."""
    return f"{what.strip()} Your credits were refunded."


def user_message(code: FailureCode, what: str | None = None) -> str:
    """What the owner of a generation failed with `code` reads; `what` says more than the
    code's own sentence (which view of a workflow failed)."""
    return refunded(what or _WHAT[code])


def failure_event(
    generation: Generation,
    code: FailureCode,
    detail: str | None,
    error: BaseException | None,
    source: str,
) -> Occurrence:
    """The error event of a generation that just failed (recorded by `lifecycle.fail`)."""
    if detail is None:
        detail = error.message if isinstance(error, ProviderError) else generation.error_message
    return Occurrence(
        severity=_SEVERITY.get(code, Severity.ERROR),
        category=ErrorCategory.GENERATION,
        message=f"Generation failed: {code.value}: {detail}",
        error_code=code.value,
        user_facing=True,
        user_message=generation.error_message,
        user_id=str(generation.user_id),
        request_id=generation.request_id,
        function_name=source,
        stack_trace=stack_of(error) if error is not None else None,
        metadata={
            "generationId": str(generation.id),
            "model": generation.model,
            # Which provider answered, when one did (an HTTP error carries its status).
            "provider": getattr(error, "status_code", None) and generation.provider,
        },
    )
