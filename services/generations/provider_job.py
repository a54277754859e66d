"""A generation's `provider_job` column as a typed shape: the provider job (a queueing
provider's prediction) that the current attempt waits on, as the runner attached it.

The column stays JSON with the keys it has always had (`job`, `provider`, `route`, `lease`,
`model`, `at`, `expected`), so rows written before this shape read the same, and rows from
older versions, which lack some of the later keys, read with those unset. Code reads it
through `ProviderJob.of(generation)` and writes `to_json()`; `provider_job_id`, the column
a finished job's result is claimed by, is the same job id (`job_id`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.generation import Generation


@dataclass(frozen=True, slots=True)
class ProviderJob:
    # The provider's id of the job (JSON "job"), and the adapter that submitted it.
    job_id: str
    provider: str
    # The job's route: its place among the model's routes in the catalogue.
    route: int
    # The token of the provider-limit slot the job holds until its result is taken (JSON
    # "lease"; not the step's lease, services.generations.leases). "" when none was written.
    limit_token: str = ""
    # The provider's own model id the job runs (the route's, when it was submitted).
    model: str | None = None
    # When the provider accepted it (epoch seconds, JSON "at"): polls are timed from here.
    accepted_at: float | None = None
    # How long the catalogue expects the route to take (JSON "expected").
    expected_seconds: float | None = None

    @classmethod
    def of(cls, generation: Generation) -> ProviderJob | None:
        """The job the generation's attempt waits on; None when there is none."""
        return cls.from_json(generation.provider_job) if generation.provider_job else None

    @classmethod
    def from_json(cls, job: Mapping[str, Any]) -> ProviderJob:
        model = job.get("model")
        return cls(
            job_id=str(job["job"]),
            provider=str(job["provider"]),
            route=int(job["route"]),
            limit_token=str(job.get("lease") or ""),
            model=None if model is None else str(model),
            accepted_at=_number(job.get("at")),
            expected_seconds=_number(job.get("expected")),
        )

    def to_json(self) -> dict[str, Any]:
        """The column's JSON: the keys rows have always had; unset values (and an empty
        `limit_token`) are left out."""
        values = {
            "route": self.route,
            "provider": self.provider,
            "job": self.job_id,
            "lease": self.limit_token or None,
            "model": self.model,
            "at": self.accepted_at,
            "expected": self.expected_seconds,
        }
        return {k: v for k, v in values.items() if v is not None}


def _number(value: object) -> float | None:
    # bool is an int: never a time.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
