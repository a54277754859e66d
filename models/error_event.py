from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model


class Severity(StrEnum):
    CRITICAL = "CRITICAL"
    ERROR = "ERROR"
    WARNING = "WARNING"
    INFO = "INFO"


class ErrorCategory(StrEnum):
    AUTHENTICATION = "AUTHENTICATION"
    GENERATION = "GENERATION"
    PAYMENT = "PAYMENT"
    API = "API"
    DATABASE = "DATABASE"
    WEBHOOK = "WEBHOOK"
    VIDEO = "VIDEO"
    STORYBOARD = "STORYBOARD"
    WORKFLOW = "WORKFLOW"
    SYSTEM = "SYSTEM"
    USER_ACTION = "USER_ACTION"


class ErrorStatus(StrEnum):
    UNRESOLVED = "UNRESOLVED"
    RESOLVED = "RESOLVED"
    IGNORED = "IGNORED"


# One row per fingerprint: an occurrence only bumps `count` and the last-occurrence context.
# `version` grows with every change (occurrence, resolve, ignore), so live subscribers keep
# only the newest state of a group. All writes go through services.error_events.
class ErrorEvent(Model):
    id = fields.BigIntField(primary_key=True)
    fingerprint = fields.CharField(max_length=64, unique=True)
    severity = fields.CharEnumField(Severity, max_length=16)
    category = fields.CharEnumField(ErrorCategory, max_length=24)
    message = fields.TextField()
    error_code = fields.CharField(max_length=64, null=True)
    user_facing = fields.BooleanField(default=False)
    user_message = fields.TextField(null=True)
    status = fields.CharEnumField(ErrorStatus, max_length=16, default=ErrorStatus.UNRESOLVED)
    regressed = fields.BooleanField(default=False)
    count = fields.IntField(default=1)
    version = fields.IntField(default=1)
    first_seen = fields.DatetimeField()
    last_seen = fields.DatetimeField(db_index=True)
    resolved_at = fields.DatetimeField(null=True)
    resolution_notes = fields.TextField(null=True)
    last_occurrence: dict[str, Any] | None = fields.JSONField(null=True)

    class Meta:
        table = "error_events"
        # The admin list filters by status and sorts by last_seen; stats count unresolved groups.
        indexes = (("status", "last_seen"),)


# Per-hour occurrence counters, bumped by the same upsert transaction as the group, so stats over
# a window read a few rows per hour instead of scanning occurrences.
class ErrorHourlyCount(Model):
    id = fields.BigIntField(primary_key=True)
    hour = fields.DatetimeField(db_index=True)
    fingerprint = fields.CharField(max_length=64)
    severity = fields.CharEnumField(Severity, max_length=16)
    category = fields.CharEnumField(ErrorCategory, max_length=24)
    count = fields.IntField(default=0)

    class Meta:
        table = "error_hourly_counts"
        unique_together = (("hour", "fingerprint", "severity"),)
