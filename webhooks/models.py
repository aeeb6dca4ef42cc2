"""Client webhook endpoints, the delivery outbox and its attempt log."""

import uuid

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from jobs.models import Company


class EndpointRole(models.TextChoices):
    """What an endpoint is to its company.

    A ``subscriber`` receives the events it subscribes to. The company's one ``integration``
    endpoint also receives ``jobs.create`` for every new job of the company, whatever its
    ``events``: that delivery is the hand-off of seed 000 (the platform hands the job to the
    integration), and when it finally fails while the job is still pending the job fails with
    the seed's reason (``jobs.handoff``).
    """

    SUBSCRIBER = "subscriber"
    INTEGRATION = "integration"


class EndpointQuerySet(models.QuerySet["WebhookEndpoint"]):
    def live(self) -> "EndpointQuerySet":
        """Not deleted: a deleted endpoint is gone for everyone at once (its rows follow)."""
        return self.filter(deleted_at=None)

    def deleted(self) -> "EndpointQuerySet":
        """Deleted by their company, their rows not yet all deleted by the worker."""
        return self.exclude(deleted_at=None)


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    role = models.CharField(
        max_length=16,
        choices=EndpointRole.choices,
        default=EndpointRole.SUBSCRIBER,
        db_default=EndpointRole.SUBSCRIBER,  # rows inserted by SQL (tests, bulk loads) too
    )
    events = models.JSONField(
        default=list,
        blank=True,  # an integration endpoint may subscribe to nothing beyond its hand-offs
        help_text='Event ids or patterns: "jobs.completed", "jobs.*", "*".',
    )
    description = models.CharField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True)
    secret = models.CharField(max_length=100)
    # The secret before the last rotation keeps signing (beside the new one) until it expires.
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set by a DELETE: the endpoint is gone for its company from then on (and inactive), while
    # the worker deletes its deliveries in batches and then this row
    # (``webhooks.services.endpoints_delete_pending``).
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = EndpointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["company", "is_active"], name="webhook_endpoint_company")]
        constraints = [
            models.UniqueConstraint(
                fields=["company"],
                condition=Q(role="integration", deleted_at__isnull=True),
                name="webhook_endpoint_one_integration",
                violation_error_message="This company already has an integration endpoint.",
            ),
        ]

    def __str__(self) -> str:
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One event for one endpoint: a row of the outbox, written with the change it reports."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No single-column indexes on the two foreign keys: composite ones lead with each
    # (webhook_delivery_event_unique / webhook_delivery_endpoint, webhook_delivery_company), and
    # every index on this table is written for each delivery and each of its status changes.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    # PROTECT: deleting a company never deletes its deliveries (the audit trail; jobs likewise)
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="+", db_index=False)
    # The logged event this delivery reports (null for rows older than the event log relay).
    # Unique with the endpoint: the relay's fan-out inserts each pair once, however often it runs.
    job_event = models.ForeignKey(
        "jobs.JobEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
        db_index=False,  # webhook_delivery_job_event_unique starts with it
    )
    event_id = models.CharField(
        max_length=64, help_text="Sent as webhook-id; stable across retries."
    )
    events_id = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    # The jobs.create delivery to the company's integration endpoint: the job's hand-off.
    handoff = models.BooleanField(default=False, db_default=False)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Where the delivery stands in line: due deliveries are claimed in this order. The fan-out
    # spaces a company's deliveries JOBTRAIL_WEBHOOK_FAIR_SPACING apart after its last ones, so
    # another company's delivery goes ahead of most of a burst. Never before next_attempt_at
    # (a retry stands in line from its time), so the claim's index scan meets due rows first.
    fair_at = models.DateTimeField(db_default=Now())
    # When a send task was last queued for it (the dispatcher queues what stays unsent).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # A sender holds the delivery until then (a worker that dies frees it when it passes).
    locked_until = models.DateTimeField(null=True, blank=True)
    next_trigger = models.CharField(
        max_length=16,
        default="scheduled",
        help_text="What the next attempt is: scheduled or manual (manual_taken while a sender "
        "holds the manual attempt).",
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When its last attempt was recorded (null until one was, and for deliveries attempted
    # before this field existed): the console's "last attempt" window reads it by an index.
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhook_delivery_event_unique"
            ),
            models.UniqueConstraint(
                fields=["job_event", "endpoint"], name="webhook_delivery_job_event_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=Q(status="pending"),
            ),
            # the claim: pending rows in line order
            models.Index(
                fields=["fair_at"], name="webhook_delivery_fair", condition=Q(status="pending")
            ),
            # the fan-out: where a company's untried deliveries end (one backward probe)
            models.Index(
                fields=["company", "fair_at"],
                name="webhook_delivery_company_fair",
                condition=Q(status="pending", attempts=0),
            ),
            models.Index(fields=["company", "-created_at"], name="webhook_delivery_company"),
            models.Index(
                fields=["endpoint", "status", "-created_at"], name="webhook_delivery_endpoint"
            ),
            models.Index(fields=["object_id"], name="webhook_delivery_object"),
            # the console's delivery trends: a time window's rows by endpoint and status (the
            # index holds every column the aggregate reads)
            models.Index(
                fields=["created_at", "endpoint", "status"], name="webhook_delivery_trend"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.events_id} → {self.endpoint_id}"


class AttemptTrigger(models.TextChoices):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


# A delivery's ``next_trigger`` while a sender holds its manual attempt (a redelivery, a test
# event): should the sender die before the outcome is recorded, the next claim knows the one
# attempt was taken (``webhooks.services.used_up_reason``).
MANUAL_TAKEN = "manual_taken"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    trigger = models.CharField(
        max_length=16, choices=AttemptTrigger.choices, default=AttemptTrigger.SCHEDULED
    )
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    # Where the attempt went and what was said: the endpoint's URL at the time, the request
    # headers sent (the signature redacted: never stored), the answer's headers (bounded).
    url = models.CharField(max_length=2000, blank=True, default="")
    request_headers = models.JSONField(default=dict, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        indexes = [models.Index(fields=["started_at"], name="webhook_attempt_started")]

    def __str__(self) -> str:
        return f"#{self.number} {self.status_code or self.error[:40]}"
