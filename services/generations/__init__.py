"""The generation domain, one module per concern:

- `creation`: validation, pricing, idempotency, the response cache, the hold with the new row;
- `lifecycle`: start, progress, complete, fail, cancel, retry;
- `failures`: the failure codes, the owner's message, the error event of a failure;
- `charges`: what a completion is charged (the partial-charge rule);
- `params`: the `params` column as a typed shape (GenerationParams);
- `provider_job`: the `provider_job` column as a typed shape (ProviderJob);
- `leases`: the leases on generation steps that let another worker take a dead one's over;
- `repository`: the `generations` table, every state change one guarded UPDATE (`Guard`);
- `outputs`: the outputs' shape and the one way they are written;
- `messages`: what subscribers are sent;
- `pages`: the reads behind the generations screens.

The rules a generation shares with other domains live with those domains, and the
one-statement paths compose their SQL: the hold, capture, spend guard and ledger keys in
`services.credits`, the hourly counter in `services.stats`, the completion notice's threshold
in `services.notifications`.

The public functions are re-exported here so callers write `generations.complete(...)`."""

from services.generations.creation import NewGeneration, create_generation
from services.generations.failures import FailureCode
from services.generations.lifecycle import (
    attach_job,
    cancel,
    cancel_children,
    complete,
    fail,
    report_progress,
    retry,
    start,
)
from services.generations.messages import announce, snapshot
from services.generations.outputs import StoredOutput, outputs_of, stored_output
from services.generations.params import GenerationParams
from services.generations.provider_job import ProviderJob
from services.generations.repository import (
    CANCELABLE,
    IDEMPOTENCY_WINDOW,
    RETRYABLE,
    Guard,
    claim_job,
    get_row,
    get_visible,
    prune_idempotency_keys,
    replace_outputs,
    transition,
)

__all__ = [
    "CANCELABLE",
    "IDEMPOTENCY_WINDOW",
    "RETRYABLE",
    "FailureCode",
    "GenerationParams",
    "Guard",
    "NewGeneration",
    "ProviderJob",
    "StoredOutput",
    "announce",
    "attach_job",
    "cancel",
    "cancel_children",
    "claim_job",
    "complete",
    "create_generation",
    "fail",
    "get_row",
    "get_visible",
    "outputs_of",
    "prune_idempotency_keys",
    "replace_outputs",
    "report_progress",
    "retry",
    "snapshot",
    "start",
    "stored_output",
    "transition",
]
