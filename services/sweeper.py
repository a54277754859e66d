"""The sweeper: recovers work that a crash left behind. Safe to run in several processes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from models.generation import Generation, GenerationStatus
from services import credits, generations, jobs, workflows
from services.catalogue import Catalogue
from services.generations import leases
from services.generations.failures import FailureCode

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
    resumed = await leases.resend_lapsed(workflows.waits_on_parts)

    timed_out = 0
    shortest = min((m.time_limit for m in catalogue.models.values()), default=300.0)
    running = await Generation.filter(
        status=GenerationStatus.PROCESSING, started_at__lt=now - timedelta(seconds=shortest)
    ).only("id", "kind", "phase", "model", "started_at", "user_id", "request_id")
    for generation in running:
        if workflows.waits_on_parts(generation):
            continue  # its views have time limits of their own
        limit = catalogue.time_limit(generation.model)
        if generation.started_at and generation.started_at < now - timedelta(seconds=limit):
            failed = await generations.fail(
                generation.id,
                FailureCode.PROVIDER_TIMEOUT,
                detail=f"exceeded its time limit of {limit:.0f}s",
                source="sweeper.sweep",
            )
            if failed is not None:
                timed_out += 1
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
