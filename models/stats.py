from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


# Per-hour, per-model counts of generations that reached a final state. Bumped in the same
# transaction as the transition (services.stats), so the failure rate over a window is a sum
# over a few rows, however many generations ran.
class GenerationHourlyCount(Model):
    id = fields.BigIntField(primary_key=True)
    hour = fields.DatetimeField(db_index=True)
    model = fields.CharField(max_length=120)
    completed = fields.IntField(default=0)
    failed = fields.IntField(default=0)
    canceled = fields.IntField(default=0)

    class Meta:
        table = "generation_hourly_counts"
        unique_together = (("hour", "model"),)
