"""Small input and output serializers of the v1 API (validation only; no workflow here)."""

import json
import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import (
    EventStatus,
    FailureReason,
    Job,
    JobEvent,
    JobStatus,
    PushCorrelationKind,
    PushResult,
    PushStatus,
)
from .representation import (
    job_event_representation,
    job_representation,
    push_counts,
    push_result_representation,
)
from .services import PushResultData

INT_MAX = 2_147_483_647  # the database's integer range
MESSAGE_MAX = 10_000
SLUG_RE = r"^[-a-zA-Z0-9_]+$"
CODE_RE = r"^[A-Za-z0-9._-]+$"
REPORTABLE_EVENTS = [
    EventStatus.STARTED,
    EventStatus.COMPLETED,
    EventStatus.COMPLETED_WITH_ERRORS,
    EventStatus.FAILED,
]


# --- strict fields: JSON types are not coerced ------------------------------------------------


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer; ``2.0`` is one too (JSON Schema's ``integer`` says so), ``"2"`` is not."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    default_error_messages = {"invalid_choice": '"{input}" is not one of: {choices}.'}

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str) and data in self.choice_strings_to_values:
            return self.choice_strings_to_values[data]
        shown = str(data) if len(str(data)) <= 64 else str(data)[:61] + "..."
        self.fail("invalid_choice", input=shown, choices=", ".join(self.choices))


def count_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(min_value=0, max_value=INT_MAX, **kwargs)


@extend_schema_field(OpenApiTypes.OBJECT)
class MetadataField(serializers.Field):
    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must be at most {limit} bytes as JSON (JOBTRAIL_MAX_METADATA_BYTES).",
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        limit = settings.JOBTRAIL_MAX_METADATA_BYTES
        if len(json.dumps(data, separators=(",", ":")).encode()) > limit:
            self.fail("too_large", limit=limit)
        return data

    def to_representation(self, value: Any) -> Any:
        return value


# Bound fields of input serializers, per thread and class, ready for the next instance.
_FIELD_POOL = threading.local()


def _field_pool(cls: type) -> list[Any]:
    pools: dict[type, list[Any]] | None = getattr(_FIELD_POOL, "pools", None)
    if pools is None:
        pools = _FIELD_POOL.pools = {}
    return pools.setdefault(cls, [])


class RefusesUnknownFields:
    """A serializer (mixin) refusing anything but a JSON object, and fields it does not know;
    its OpenAPI request schema says ``additionalProperties: false`` (``config.schema``)."""

    unknown_field_messages: dict[str, str] = {}
    openapi_additional_properties = False

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["The request body must be a JSON object."]}
            )
        fields = self.fields  # type: ignore[attr-defined]
        # a read-only field is no input either (the refresh serializer's ``access``)
        unknown = sorted(set(data) - {name for name, f in fields.items() if not f.read_only})
        if unknown:
            raise serializers.ValidationError(
                {
                    name: [self.unknown_field_messages.get(name, "Unknown field.")]
                    for name in unknown
                }
            )
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(RefusesUnknownFields, serializers.Serializer):
    """Refuse anything but a JSON object, and fields the serializer does not know.

    DRF deep-copies every declared field for each serializer instance (a new ``Field`` built
    per field per request: a tenth of an API write's CPU). An input serializer's fields hold no
    state of their own between validations, so once ``is_valid`` has run they are handed to
    the next instance of the class in the same thread (re-parented to it). An instance that
    finds none (the first, or one nested while another validates) builds its own, as DRF does.
    """

    # The OpenAPI document says so (config.schema.AutoSchema): ``additionalProperties: false``,
    # plus the rules between fields that JSON Schema can state (``openapi_rules``).
    openapi_rules: dict[str, Any] = {}

    @cached_property
    def fields(self) -> Any:
        pool = _field_pool(type(self))
        if pool:
            fields = pool.pop()
            fields.serializer = self
            for field in fields.values():
                field.parent = self
            return fields
        return super().fields

    def is_valid(self, *, raise_exception: bool = False) -> bool:
        try:
            return super().is_valid(raise_exception=raise_exception)
        finally:
            pool = _field_pool(type(self))
            if not pool and "fields" in self.__dict__:
                pool.append(self.__dict__["fields"])


# --- input ------------------------------------------------------------------------------------


class JobCreateInput(StrictSerializer):
    type = StrictRegexField(
        SLUG_RE,
        max_length=64,
        help_text="Job type slug, e.g. export",
        error_messages={"invalid": "Use letters, digits, '-' and '_' only."},
    )
    code = StrictRegexField(
        CODE_RE,
        max_length=64,
        required=False,
        help_text="Unique per company; generated (JOB-XXXXXXXX) when omitted.",
        error_messages={"invalid": "Use letters, digits, '.', '-' and '_' only."},
    )
    total_records = count_field(required=False, allow_null=True)
    expires_after = StrictIntegerField(
        min_value=1,
        max_value=INT_MAX,
        required=False,
        help_text="Seconds of silence before the job expires (default from settings).",
    )
    metadata = MetadataField(required=False)


class JobProgressInput(StrictSerializer):
    unknown_field_messages = {
        "status": "status cannot be patched; POST an event to /api/v1/jobs/{id}/events/.",
    }
    openapi_rules = {"minProperties": 1}
    total_records = count_field(required=False)
    effected_records = count_field(required=False)
    message = StrictCharField(required=False, allow_blank=True, max_length=MESSAGE_MAX)
    metadata = MetadataField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                "Send at least one of total_records, effected_records, message, metadata."
            )
        return attrs


class EventCreateInput(StrictSerializer):
    openapi_rules = {
        "description": "`failure_reason` is required when `status` is `failed` and refused "
        "otherwise.",
        "if": {"properties": {"status": {"const": "failed"}}, "required": ["status"]},
        "then": {"required": ["failure_reason"]},
        "else": {"not": {"required": ["failure_reason"]}},
    }
    status = StrictChoiceField(choices=REPORTABLE_EVENTS)
    failure_reason = StrictChoiceField(choices=FailureReason.choices, required=False)
    message = StrictCharField(required=False, allow_blank=True, max_length=MESSAGE_MAX)
    total_records = count_field(required=False)
    effected_records = count_field(required=False)


class NoBodyInput(StrictSerializer):
    """An action that takes no body: none, or ``{}``. Anything else is refused as any other
    body would be (malformed JSON, another media type, fields), never silently ignored."""


class CancelInput(StrictSerializer):
    message = StrictCharField(required=False, allow_blank=True, max_length=MESSAGE_MAX)


class QueryFilters(serializers.Serializer):
    """Query-string filters: a filter sent empty (``?status=``) is refused, not ignored.

    DRF reads an empty value of an optional field from a query string as "not sent"; the API
    refuses it instead, as its document says (``minLength``, ``enum``). ``null`` is no value
    either: ``?status=null`` is the string "null", refused as any value outside the enum.
    """

    def to_internal_value(self, data: Any) -> Any:
        names: list[str] = list(self.fields.keys())
        blank = sorted(name for name in names if name in data and data.get(name) == "")
        if blank:
            raise serializers.ValidationError(
                {name: ["Leave the filter out instead of sending it empty."] for name in blank}
            )
        return super().to_internal_value(data)


class JobListFilters(QueryFilters):
    status = StrictChoiceField(choices=JobStatus.choices, required=False)
    type = StrictRegexField(SLUG_RE, max_length=64, required=False)
    code = StrictRegexField(CODE_RE, max_length=64, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class PushResultListFilters(QueryFilters):
    status = StrictChoiceField(choices=PushStatus.choices, required=False)


# --- output -----------------------------------------------------------------------------------


class PushCountsSerializer(serializers.Serializer):
    success = serializers.IntegerField()
    failed = serializers.IntegerField()


class ReportStateSerializer(serializers.Serializer):
    status = serializers.CharField()
    url = serializers.URLField(allow_null=True)


class JobSerializer(serializers.ModelSerializer):
    company_id = serializers.UUIDField(read_only=True)
    failure_reason = serializers.SerializerMethodField()
    push_results = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "code",
            "type",
            "company_id",
            "status",
            "failure_reason",
            "message",
            "total_records",
            "effected_records",
            "push_results",
            "start_time",
            "end_time",
            "expires_at",
            "report",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=FailureReason.choices, allow_null=True))
    def get_failure_reason(self, job: Job) -> str | None:
        return job.failure_reason or None

    @extend_schema_field(PushCountsSerializer)
    def get_push_results(self, job: Job) -> dict[str, int]:
        return push_counts(job)

    @extend_schema_field(ReportStateSerializer)
    def get_report(self, job: Job) -> dict[str, Any]:
        return job_representation(job)["report"]

    def to_representation(self, instance: Job) -> dict[str, Any]:
        # The fields above describe the schema; the JSON itself is jobs.representation's.
        return job_representation(instance)


class JobEventSerializer(serializers.ModelSerializer):
    failure_reason = serializers.SerializerMethodField()
    actor = serializers.SerializerMethodField()
    job_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = JobEvent
        fields = [
            "job_id",
            "sequence",
            "status",
            "failure_reason",
            "message",
            "data",
            "source",
            "actor",
            "created_at",
        ]
        read_only_fields = fields

    def get_failure_reason(self, event: JobEvent) -> str | None:
        return event.failure_reason or None

    def get_actor(self, event: JobEvent) -> str | None:
        return job_event_representation(event)["actor"]

    def to_representation(self, instance: JobEvent) -> dict[str, Any]:
        return job_event_representation(instance)


class JobEventCreatedSerializer(JobEventSerializer):
    job = JobSerializer(read_only=True)

    class Meta(JobEventSerializer.Meta):
        fields = [*JobEventSerializer.Meta.fields, "job"]
        read_only_fields = fields

    def to_representation(self, instance: JobEvent) -> dict[str, Any]:
        return {**job_event_representation(instance), "job": job_representation(instance.job)}


class PushResultSerializer(serializers.ModelSerializer):
    job_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = PushResult
        fields = [
            "job_id",
            "push_communication_id",
            "status",
            "response_code",
            "connection_id",
            "business_name",
            "service_name",
            "data_type",
            "source_object_ids",
            "requested_on",
            "completed_on",
            "validation_errors",
            "service_account_ref",
            "request_id",
            "received_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: PushResult) -> dict[str, Any]:
        return push_result_representation(instance)


# --- the push status webhook of the accounting data service (seed 001) ------------------------


class NullAsAbsent(serializers.Serializer):
    """An optional field the sender sends as ``null`` reads as not sent: the seed types them as
    strings, arrays and objects and says some are "returned if ..."; a sender that writes its
    empty values as null must not have its push refused (and lost). Required fields stay
    required: a null ``pushCommunicationId`` is still a 400."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = {
                key: value
                for key, value in data.items()
                if value is not None or key not in self.fields or self.fields[key].required
            }
        return super().to_internal_value(data)


def _optional_text() -> StrictCharField:
    return StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=255)


class ValidationErrorItem(NullAsAbsent):
    field = StrictCharField(
        allow_blank=True, allow_null=True, max_length=1000, required=False, default=""
    )
    message = StrictCharField(
        allow_blank=True, allow_null=True, max_length=MESSAGE_MAX, required=False, default=""
    )


class PushValidation(NullAsAbsent):
    errors = ValidationErrorItem(many=True, required=False, default=list)  # type: ignore[assignment]


VALIDATION_NAMES = frozenset(PushValidation._declared_fields)
VALIDATION_ERROR_NAMES = frozenset(ValidationErrorItem._declared_fields)


class PushEventData(NullAsAbsent):
    """The ``data`` object; unknown fields are accepted (the sender may add fields).

    Their names are kept as ``ignored_fields`` (sorted), answered back and shown to staff, so
    a misspelled field (``validationErrors``) does not vanish unnoticed.
    """

    event = StrictChoiceField(choices=["push"], required=False)
    pushCommunicationId = StrictCharField(max_length=128)
    status = StrictChoiceField(choices=PushStatus.choices)
    connectionId = _optional_text()
    businessName = _optional_text()
    serviceName = _optional_text()
    dataType = _optional_text()
    sourceObjectIds = serializers.ListField(
        child=StrictCharField(max_length=255), required=False, allow_null=True, max_length=10_000
    )
    # The seed's failed example spells it sourceObjectId; a real receiver takes both.
    sourceObjectId = serializers.ListField(
        child=StrictCharField(max_length=255), required=False, allow_null=True, max_length=10_000
    )
    requestedOn = serializers.DateTimeField(required=False, allow_null=True)
    completedOn = serializers.DateTimeField(required=False, allow_null=True)
    responseCode = StrictIntegerField(required=False, allow_null=True, min_value=100, max_value=599)
    validation = PushValidation(required=False, allow_null=True)
    serviceAccountRef = serializers.DictField(required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        ignored = {str(key) for key in data if key not in self.fields}
        if "sourceObjectIds" in value and "sourceObjectId" in value:
            ignored.add("sourceObjectId")  # both spellings sent: the first is read
        ignored |= _unread_validation_names(data.get("validation"))
        value["ignored_fields"] = sorted(ignored)
        return value


def _unread_validation_names(validation: Any) -> set[str]:
    """Names inside ``validation`` that are not read, as a path from ``data`` (``*`` for any
    item of ``errors``): a misspelled ``error`` or an item's ``fieldName`` would otherwise
    leave the result without its errors, unnoticed."""
    if not isinstance(validation, Mapping):
        return set()
    names = {f"validation/{key}" for key in validation if key not in VALIDATION_NAMES}
    items = validation.get("errors")
    if isinstance(items, list):
        names |= {
            f"validation/errors/*/{key}"
            for item in items
            if isinstance(item, Mapping)
            for key in item
            if key not in VALIDATION_ERROR_NAMES
        }
    return names


class PushEventInput(NullAsAbsent):
    """The sender's payload as it is: ``data`` and ``requestId``. Other names beside them are
    accepted like unknown names in ``data`` (the sender may add some) and listed with those in
    ``ignored_fields``, with a leading ``/`` (a JSON Pointer from the payload's root; names in
    ``data`` stand bare): a misspelled ``requestID`` must not vanish unnoticed."""

    data = PushEventData()  # type: ignore[assignment]
    requestId = _optional_text()

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["The request body must be a JSON object."]}
            )
        value = super().to_internal_value(data)
        beside = [f"/{key}" for key in data if key not in self.fields]
        if beside:
            value["data"]["ignored_fields"] = sorted([*value["data"]["ignored_fields"], *beside])
        return value


def push_result_data(payload: dict[str, Any]) -> PushResultData:
    """A validated ``PushEventInput`` as the service's ``PushResultData``.

    Both spellings of the seed are read: ``sourceObjectIds`` (its success example and its
    table) and ``sourceObjectId`` (its failed example).
    """
    data = payload["data"]
    validation = data.get("validation") or {}
    return PushResultData(
        push_communication_id=data["pushCommunicationId"],
        status=PushStatus(data["status"]),
        connection_id=data.get("connectionId", ""),
        business_name=data.get("businessName", ""),
        service_name=data.get("serviceName", ""),
        data_type=data.get("dataType", ""),
        source_object_ids=data.get("sourceObjectIds", data.get("sourceObjectId", [])),
        requested_on=data.get("requestedOn"),
        completed_on=data.get("completedOn"),
        response_code=data.get("responseCode"),
        validation_errors=[dict(e) for e in validation.get("errors", [])],
        service_account_ref=data.get("serviceAccountRef", {}),
        request_id=payload.get("requestId", ""),
        ignored_fields=list(data.get("ignored_fields", [])),
    )


# --- push correlations and the push ingest URL ------------------------------------------------


class PushCorrelationInput(StrictSerializer):
    openapi_rules = {
        "anyOf": [{"required": ["push_communication_id"]}, {"required": ["request_id"]}]
    }
    push_communication_id = StrictCharField(max_length=128, required=False)
    request_id = StrictCharField(max_length=255, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("push_communication_id") and not attrs.get("request_id"):
            raise serializers.ValidationError(
                "Send push_communication_id, request_id or both: the ids the accounting data "
                "service gave the push you started."
            )
        return attrs


class PushCorrelationSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PushCorrelationKind.choices)
    value = serializers.CharField()
    created_at = serializers.DateTimeField()


class PushCorrelationsRegisteredSerializer(serializers.Serializer):
    job_id = serializers.UUIDField()
    correlations = PushCorrelationSerializer(many=True)
    attached = serializers.IntegerField(
        help_text="Push results that had come before this registration, recorded now."
    )


class IngestSecretInput(StrictSerializer):
    secret = StrictCharField(
        min_length=16,
        max_length=200,
        required=False,
        help_text="The secret your accounting data service signs its webhooks with; omitted, "
        "Jobtrail generates one (shown once).",
    )


class PushIngestSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Configure this URL in the accounting data service.")
    signature_header = serializers.CharField()
    secret_configured = serializers.BooleanField()
    previous_secret_expires_at = serializers.DateTimeField(allow_null=True)


class PushIngestWithSecretSerializer(PushIngestSerializer):
    secret = serializers.CharField(
        required=False, help_text="Only when Jobtrail generated it: shown this once."
    )


class PushRecordedSerializer(PushResultSerializer):
    """The answer to a recorded push: the result and the keys of ``data`` it did not read."""

    ignored_fields = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Keys of this request's `data` that are not read (misspelled or new fields).",
    )

    class Meta(PushResultSerializer.Meta):
        fields = [*PushResultSerializer.Meta.fields, "ignored_fields"]
        read_only_fields = fields


class IngestedSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["attached", "duplicate", "unmatched"])
    job_id = serializers.UUIDField(allow_null=True)
    push_communication_id = serializers.CharField()
    push_result = PushResultSerializer(allow_null=True)
    ignored_fields = serializers.ListField(
        child=serializers.CharField(),
        help_text="Keys of this request's `data` that are not read (misspelled or new fields).",
    )
