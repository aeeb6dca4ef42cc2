"""The OpenAPI 3.1 ``webhooks`` section: one payload schema per event id Jobtrail sends.

Every delivery is a ``POST`` with a JSON body ``{"event": {dt, events_id, object_id}, "data":
...}`` and the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``). ``SPECTACULAR_SETTINGS["WEBHOOKS"]`` points here.
"""

from typing import Any

from drf_spectacular.utils import (
    OpenApiResponse,
    OpenApiWebhook,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers

from jobs.serializers import JobEventSerializer, JobSerializer, PushResultSerializer

from .events import EVENT_TYPES
from .services import TEST_EVENT

VERIFY = """Every delivery carries the [Standard Webhooks](https://www.standardwebhooks.com/)
headers:

- `webhook-id`: the message id (`msg_…`), the same on every retry of one event: use it to drop
  duplicates;
- `webhook-timestamp`: Unix seconds when this attempt was signed;
- `webhook-signature`: space-separated `v1,<base64>` signatures: HMAC-SHA256 with the endpoint's
  secret (`whsec_…`, base64 after the prefix) over `{webhook-id}.{webhook-timestamp}.{body}`.
  Right after a secret rotation the previous secret signs too (two signatures) until it expires.

To verify: refuse a timestamp more than 5 minutes from your clock, compute the signature over
the raw body as received (before any JSON parsing), and compare it in constant time with each
`v1,` signature of the header. The `standardwebhooks` libraries do all of it:
`Webhook(secret).verify(body, headers)`.

Answer any 2xx within the timeout (JOBTRAIL_WEBHOOK_TIMEOUT, 15 s) to acknowledge. Anything else
is retried on the schedule (JOBTRAIL_WEBHOOK_RETRY_SCHEDULE); `410 Gone` disables the endpoint.
"""

HEADERS: list[dict[str, Any]] = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^msg_"},
        "description": "The message id: the same on every retry of one event (deduplicate on it).",
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
        "description": "Unix seconds when this attempt was signed; refuse one over 5 minutes off.",
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": "^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"},
        "description": "`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` "
        "with the endpoint's secret; two, space-separated, while a rotated secret still signs.",
    },
]


def postprocess_webhooks(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Put the Standard Webhooks headers on every webhook (drf-spectacular's webhooks take no
    parameters)."""
    for item in result.get("webhooks", {}).values():
        for operation in item.values():
            operation["parameters"] = [dict(header) for header in HEADERS]
    return result


class JobTimelineData(JobSerializer):
    """The job as the event left it, and the timeline event itself."""

    job_event = JobEventSerializer(read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "job_event"]
        read_only_fields = fields


class JobPushResultData(JobSerializer):
    """The job as the push result left it, and the push result."""

    push_result = PushResultSerializer(read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "push_result"]
        read_only_fields = fields


class TestEventData(serializers.Serializer):
    message = serializers.CharField()


def _data_for(events_id: str) -> type[serializers.Serializer]:
    if events_id == "jobs.push_results.create":
        return JobPushResultData
    if events_id == "jobs.report.ready":
        return JobSerializer  # the job, its report ready (report.url: the signed link)
    if events_id == TEST_EVENT:
        return TestEventData
    return JobTimelineData


def _camel(events_id: str) -> str:
    return "".join(part.capitalize() for part in events_id.replace("_", ".").split("."))


def payload_serializer(events_id: str) -> type[serializers.Serializer]:
    """The body of an ``events_id`` delivery, as a serializer the document describes."""
    name = _camel(events_id)

    @extend_schema_field({"type": "string", "const": events_id})
    class EventsIdField(serializers.CharField):
        pass

    envelope = type(
        f"{name}WebhookEvent",
        (serializers.Serializer,),
        {
            "__module__": __name__,
            "__doc__": f"What happened: `{events_id}`, when, and to which object.",
            "dt": serializers.DateTimeField(help_text="When the event happened (ISO 8601)."),
            "events_id": EventsIdField(),
            "object_id": serializers.CharField(
                help_text="The job's id (the endpoint's for webhooks.test)."
            ),
        },
    )
    return type(
        f"{name}WebhookPayload",
        (serializers.Serializer,),
        {
            "__module__": __name__,
            "__doc__": EVENT_TYPES.get(events_id, "A test event (sent on request)."),
            "event": envelope(),
            "data": _data_for(events_id)(),
        },
    )


def _webhook(events_id: str) -> OpenApiWebhook:
    description = EVENT_TYPES.get(events_id, "A test event, sent when you ask for one.")
    return OpenApiWebhook(
        name=events_id,
        decorator=extend_schema(
            summary=description,
            description=f"{description}\n\n{VERIFY}",
            tags=["webhooks"],
            request=payload_serializer(events_id),
            responses={
                200: OpenApiResponse(description="Any 2xx acknowledges the delivery."),
                410: OpenApiResponse(description="Gone: disables the endpoint."),
            },
        ),
    )


# Every event id the sender can emit: the catalogue and the test event.
EMITTED: list[str] = [*EVENT_TYPES, TEST_EVENT]
WEBHOOKS: list[OpenApiWebhook] = [_webhook(events_id) for events_id in EMITTED]
