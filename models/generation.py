from __future__ import annotations

import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.user import User


class GenerationKind(StrEnum):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    TEXT = "TEXT"
    MULTI_VIEW = "MULTI_VIEW"


class GenerationStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


class WorkflowPhase(StrEnum):
    """The step a workflow (a parent generation) is at; each workflow uses its own values.
    Multi-view: the front view is drawn (and redrawn for each round of changes), waits for
    approval, is analysed, then the other views are drawn."""

    FRONT_VIEW = "FRONT_VIEW"
    APPROVAL = "APPROVAL"
    ANALYSIS = "ANALYSIS"
    VIEWS = "VIEWS"


class HoldState(StrEnum):
    HELD = "HELD"
    CAPTURED = "CAPTURED"
    RELEASED = "RELEASED"


FINAL_STATUSES = frozenset(
    {GenerationStatus.COMPLETED, GenerationStatus.FAILED, GenerationStatus.CANCELED}
)


class Generation(Model):
    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="generations"
    )
    user_id: uuid.UUID
    parent: fields.ForeignKeyNullableRelation[Generation] = fields.ForeignKeyField(
        "models.Generation", related_name="children", null=True, db_index=True
    )
    parent_id: uuid.UUID | None
    kind = fields.CharEnumField(GenerationKind, max_length=16)
    status = fields.CharEnumField(GenerationStatus, max_length=24, default=GenerationStatus.QUEUED)
    progress = fields.FloatField(default=0.0)
    stage = fields.CharField(max_length=120, null=True)
    model = fields.CharField(max_length=120)
    preset = fields.CharField(max_length=120, null=True)
    provider = fields.CharField(max_length=64, null=True)
    prompt = fields.TextField()
    negative_prompt = fields.TextField(null=True)
    params: dict[str, Any] = fields.JSONField(default=dict)
    # A workflow's step (services/workflows owns it). NULL for a generation that is not a
    # workflow, and for a workflow whose attempt has not finished its first step yet.
    phase = fields.CharEnumField(WorkflowPhase, max_length=24, null=True)
    cost = fields.IntField()
    # The credit hold of the current attempt: HELD until captured or released, exactly once.
    hold = fields.CharEnumField(HoldState, max_length=16, null=True)
    attempts = fields.IntField(default=1)
    error_code = fields.CharField(max_length=64, null=True)
    error_message = fields.TextField(null=True)
    version = fields.IntField(default=1)
    request_id = fields.CharField(max_length=64, null=True)
    # The queued provider job of the current attempt: {"route": index, "provider": name,
    # "job": the provider's id, "lease": the rate-limit slot it holds}. The job id is also a
    # column so a provider's webhook finds its generation.
    provider_job: dict[str, Any] | None = fields.JSONField(null=True)
    provider_job_id = fields.CharField(max_length=255, null=True, db_index=True)
    # Response cache: the canonical content's hash; a completed generation with the same
    # user and key within the TTL answers a new request at once.
    cache_key = fields.CharField(max_length=64, null=True, db_index=True)
    # Same user + key + request within the retention window returns this generation again.
    idempotency_key = fields.CharField(max_length=255, null=True)
    request_hash = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # When the current attempt was (re)queued; the sweeper re-enqueues stale QUEUED rows by it.
    queued_at = fields.DatetimeField()
    started_at = fields.DatetimeField(null=True)
    # Until when (epoch milliseconds) the current step is someone's: the worker running it
    # renews it, a message sent for the step holds it until it is due
    # (services/generations/leases.py).
    lease_expires_ms = fields.BigIntField(null=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "generations"
        indexes = (("user_id", "created_at"), ("status", "queued_at"))
        unique_together = (("user", "idempotency_key"),)


# Where an output lives in the output store: the bytes never enter the database.
class GenerationOutput(Model):
    id = fields.BigIntField(primary_key=True)
    generation: fields.ForeignKeyRelation[Generation] = fields.ForeignKeyField(
        "models.Generation", related_name="outputs"
    )
    generation_id: uuid.UUID
    index = fields.IntField()
    storage_key = fields.CharField(max_length=512)
    content_type = fields.CharField(max_length=100)
    size_bytes = fields.IntField()
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    text = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "generation_outputs"
        unique_together = (("generation", "index"),)
