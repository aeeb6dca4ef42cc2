from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.serializers import QueryFilters, StrictCharField, StrictChoiceField, StrictSerializer

from .events import EVENT_TYPES, patterns_problem
from .models import (
    DeliveryStatus,
    EndpointRole,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from .ssrf import UnsafeTarget, check_url


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


def _check_target(url: str) -> str:
    try:
        check_url(url)
    except UnsafeTarget as exc:
        raise serializers.ValidationError(str(exc)) from exc
    return url


def _check_events(events: list[str]) -> list[str]:
    problem = patterns_problem(events)
    if problem:
        raise serializers.ValidationError(problem)
    return list(dict.fromkeys(events))


def _event_patterns() -> list[str]:
    """Every value ``events`` may hold: the ids, the prefix patterns that match one, ``*``."""
    prefixes = {
        ".".join(parts[:n]) + ".*"
        for parts in (e.split(".") for e in EVENT_TYPES)
        for n in range(1, len(parts))
    }
    return ["*", *sorted(prefixes), *EVENT_TYPES]


@extend_schema_field({"type": "string", "enum": _event_patterns()})
class EventPatternField(StrictCharField):
    """An event id or a pattern (the document lists them all; anything else is refused)."""


class EndpointInput(StrictSerializer):
    openapi_rules = {
        "description": "`events` must name at least one event id or pattern, except for an "
        "`integration` endpoint (which always receives jobs.create). The `url`'s host must "
        "resolve to a public address (private ones are refused unless the server allows them).",
        "if": {"not": {"properties": {"role": {"const": "integration"}}, "required": ["role"]}},
        "then": {"required": ["events"], "properties": {"events": {"minItems": 1}}},
    }
    url = StrictCharField(max_length=2000)
    # how many may subscribe is checked with the patterns (JOBTRAIL_MAX_ENDPOINT_EVENTS); this
    # only bounds the work of reading the list
    events = serializers.ListField(
        child=EventPatternField(max_length=64),
        max_length=1000,
        required=False,
        help_text="Event ids or patterns; at least one, except for an integration endpoint "
        "(which always receives jobs.create).",
    )
    role = StrictChoiceField(
        choices=EndpointRole.choices,
        required=False,
        help_text="subscriber (default), or integration: the company's one endpoint that "
        "receives every new job's jobs.create (the hand-off); a hand-off that fails for good "
        "fails its pending job (authentication_failure, service_unreachable, service_timeout).",
    )
    description = StrictCharField(max_length=500, required=False, allow_blank=True)
    is_active = StrictBooleanField(required=False)

    def validate_url(self, value: str) -> str:
        return _check_target(value)

    def validate_events(self, value: list[str]) -> list[str]:
        return _check_events(value)


class EndpointUpdateInput(EndpointInput):
    openapi_rules = {
        "description": "Only the fields sent change. An endpoint left without events must be "
        "the `integration` endpoint."
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class EndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "role",
            "events",
            "description",
            "is_active",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EndpointWithSecretSerializer(EndpointSerializer):
    """Only in the answers to create and rotate-secret: the secret is shown once."""

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class RedeliverFailedInput(StrictSerializer):
    since = serializers.DateTimeField()


class RedeliveredSerializer(serializers.Serializer):
    redelivered = serializers.IntegerField()


class DeliveryFilters(QueryFilters):
    endpoint = serializers.UUIDField(required=False)
    status = StrictChoiceField(choices=DeliveryStatus.choices, required=False)
    events_id = StrictChoiceField(choices=list(EVENT_TYPES), required=False)
    object_id = StrictCharField(max_length=64, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "trigger",
            "started_at",
            "duration_ms",
            "status_code",
            "response_body",
            "error",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    endpoint_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint_id",
            "event_id",
            "events_id",
            "object_id",
            "handoff",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload", "attempt_log"]
        read_only_fields = fields


class EventTypeSerializer(serializers.Serializer):
    id = serializers.CharField()
    description = serializers.CharField()
