from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.models import Model


# One row per outbound provider call (every HTTP request, retries included). The URL keeps
# scheme, host and path only; secrets never reach this table.
class ApiCallLog(Model):
    id = fields.BigIntField(primary_key=True)
    provider = fields.CharField(max_length=64, db_index=True)
    model = fields.CharField(max_length=200, null=True)
    method = fields.CharField(max_length=8)
    url = fields.CharField(max_length=500)
    generation_id: uuid.UUID | None = fields.UUIDField(null=True, db_index=True)
    request_id = fields.CharField(max_length=64, null=True)
    status_code = fields.IntField(null=True)
    duration_ms = fields.IntField()
    ok = fields.BooleanField()
    error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "api_call_logs"
        indexes = (("provider", "created_at"),)
