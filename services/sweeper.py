"""The sweeper: recovers work that a crash left behind. Safe to run in several processes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from models.error_event import ErrorCategory, Severity
from models.generation import Generation, GenerationStatus
from services import credits, generations, jobs, leases, workflows
from services.catalogue import Catalogue
from services.error_events import Occurrence, record

log = logging.getLogger(__name__)
# After Redis restarted empty, generations queued this recently may have been sent since.
FORGOTTEN_GRACE = 1.0


async def sweep(catalogue: Catalogue, requeue_after: float) -> dict[str, int]:
    now = datetime.now(UTC)
    # Queued work whose message may be lost (with Redis's memory, say), at most once per
    # `requeue_after` each; queued_at stays the time the user has been waiting.
    requeued = await leases.resend_queued(requeue_after)
    if await jobs.broker_forgot():
        # Redis restarted empty: every queued message went with it, whatever its age.
        requeued += await leases.resend_all_queued(older_than=FORGOTTEN_GRACE)
    # Running work whose worker died: its lease lapsed, the step is sent again and resumed.
    resumed = await leases.resend_lapsed()

    timed_out = 0
    shortest = min((m.time_limit for m in catalogue.models.values()), default=300.0)
    running = await Generation.filter(
        status=GenerationStatus.PROCESSING, started_at__lt=now - timedelta(seconds=shortest)
    ).only("id", "kind", "model", "stage", "params", "started_at", "user_id", "request_id")
    for generation in running:
        if workflows.waiting_on_views(generation):
            continue  # its views have time limits of their own
        limit = catalogue.time_limit(generation.model)
        if generation.started_at and generation.started_at < now - timedelta(seconds=limit):
            failed = await generations.fail(
                generation.id,
                "PROVIDER_TIMEOUT",
                "The generation took too long and was stopped. Your credits were refunded.",
            )
            if failed is not None:
                timed_out += 1
                await record(
                    Occurrence(
                        severity=Severity.ERROR,
                        category=ErrorCategory.GENERATION,
                        message=f"Generation exceeded its time limit of {limit:.0f}s",
                        error_code="PROVIDER_TIMEOUT",
                        user_facing=True,
                        user_id=str(generation.user_id),
                        request_id=generation.request_id,
                        function_name="sweeper.sweep",
                        metadata={"generationId": str(generation.id), "model": generation.model},
                    )
                )
    settled = await credits.settle_open_holds()
    await workflows.nudge()
    pruned = await generations.prune_idempotency_keys()
    if requeued or resumed or timed_out or settled or pruned:
        log.info(
            "sweeper: requeued %d, resumed %d, timed out %d, settled %d holds, pruned %d keys",
            requeued,
            resumed,
            timed_out,
            settled,
            pruned,
        )
    return {
        "requeued": requeued,
        "resumed": resumed,
        "timed_out": timed_out,
        "settled": settled,
        "pruned": pruned,
    }
