"""Shapes of the seed-compatible endpoints (seeds 000, 002, 003)."""

from rest_framework import serializers

from jobs.models import FailureReason
from jobs.serializers import REPORTABLE_EVENTS, StrictCharField, StrictChoiceField, StrictSerializer


class ExportJobEventInput(StrictSerializer):
    """Seed 000. ``failureReason`` holds the reason; in the newer form ``failureReasonType``
    holds the reason and ``failureReason`` free text."""

    jobId = StrictCharField(max_length=64)
    event = StrictChoiceField(choices=REPORTABLE_EVENTS)
    failureReason = StrictCharField(
        required=False, allow_blank=True, allow_null=True, max_length=10_000
    )
    failureReasonType = StrictChoiceField(
        choices=FailureReason.choices, required=False, allow_null=True
    )


class ExportJobEventOutput(serializers.Serializer):
    jobId = serializers.UUIDField()
    jobCode = serializers.CharField()
    event = serializers.CharField()
    failureReason = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    sequence = serializers.IntegerField()
    status = serializers.CharField(help_text="The job's status after the event")
    createdAt = serializers.DateTimeField()


class ExportJobStatusInput(serializers.Serializer):
    jobCode = serializers.CharField()


class ExportJobStatusError(serializers.Serializer):
    code = serializers.IntegerField()
    fieldName = serializers.CharField()
    description = serializers.CharField()
    message = serializers.CharField()
    errorParams = serializers.DictField()


class ExportJobStatusWarning(serializers.Serializer):
    code = serializers.IntegerField()
    message = serializers.CharField()
    description = serializers.CharField()


class ExportJobStatusOutput(serializers.Serializer):
    successful = serializers.BooleanField()
    message = serializers.CharField()
    errors = ExportJobStatusError(many=True)  # type: ignore[assignment]
    warnings = ExportJobStatusWarning(many=True)
    status = serializers.ChoiceField(
        choices=["SCHEDULED", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED"], allow_null=True
    )
    filePath = serializers.URLField(allow_null=True)


class ApiJobOutput(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    company_id = serializers.CharField()
    start_time = serializers.CharField(allow_null=True, help_text="YYYY-MM-DD HH:MM:SS (UTC)")
    end_time = serializers.CharField(allow_null=True, help_text="YYYY-MM-DD HH:MM:SS (UTC)")
    status = serializers.ChoiceField(choices=["pending", "processing", "completed", "failed"])
    message = serializers.CharField(allow_blank=True)
    total_records = serializers.IntegerField()
    effected_records = serializers.IntegerField()
    created_at = serializers.CharField()
    updated_at = serializers.CharField()
