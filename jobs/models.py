"""Tenants, jobs, their timelines and push results. Workflow lives in ``jobs.services``."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Company(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CompanyMember(models.Model):
    """Ties an API user to the one company whose data it may see."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="company_membership"
    )
    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="members")
    # Part of every token's "tv" claim: raised by a password change or deactivation, which
    # revokes the tokens issued before it (jobs.tokens).
    token_version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.company}"


class JobStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS, JobStatus.FAILED}
)
ACTIVE_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)


class FailureReason(models.TextChoices):
    """The 15 failure reasons of the export job events API (seed 000)."""

    INVALID_CONFIGURATION = "invalid_configuration"
    MISSING_CONFIGURATION = "missing_configuration"
    AUTHENTICATION_FAILURE = "authentication_failure"
    ACCOUNTING_SYSTEM_AUTHENTICATION_FAILURE = "accounting_system_authentication_failure"
    PLEO_RATE_LIMIT = "pleo_rate_limit"
    ACCOUNTING_SYSTEM_RATE_LIMIT = "accounting_system_rate_limit"
    SERVICE_UNREACHABLE = "service_unreachable"
    ACCOUNTING_SYSTEM_UNREACHABLE = "accounting_system_unreachable"
    VALIDATION_FAILURE = "validation_failure"
    AUTHORIZATION_FAILURE = "authorization_failure"
    INTEGRATION_UNUSABLE = "integration_unusable"
    JOB_EXPIRED = "job_expired"
    SERVICE_TIMEOUT = "service_timeout"
    ACCOUNTING_SYSTEM_TIMEOUT = "accounting_system_timeout"
    CANCELED_BY_USER = "canceled_by_user"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # no single-column indexes: job_company_created and job_type_created lead with these
    company = models.ForeignKey(
        Company, on_delete=models.PROTECT, related_name="jobs", db_index=False
    )
    code = models.CharField(max_length=64)
    type = models.SlugField(max_length=64, db_index=False)
    status = models.CharField(max_length=32, choices=JobStatus.choices, default=JobStatus.PENDING)
    failure_reason = models.CharField(
        max_length=64, choices=FailureReason.choices, blank=True, default=""
    )
    message = models.TextField(blank=True, default="")
    total_records = models.PositiveIntegerField(null=True, blank=True)
    # Records actually affected (seed 003's meaning): a count that starts at 0, never unknown,
    # so v1 and the seed 003 record answer the same number.
    effected_records = models.PositiveIntegerField(default=0, db_default=0)
    metadata = models.JSONField(default=dict, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField()
    expires_after = models.PositiveIntegerField(help_text="Seconds of silence before expiry.")
    # last_activity_at + expires_after while the job is active, else null: indexable for expiry.
    expires_at = models.DateTimeField(null=True, blank=True)
    # Push results recorded for the job, kept with the job (push_result_record adds to them in
    # its transaction) so no read of a job ever counts its push results.
    push_success_count = models.PositiveIntegerField(default=0, editable=False)
    push_failed_count = models.PositiveIntegerField(default=0, editable=False)
    # The sequence of the job's last timeline event: the next event is numbered from the locked
    # job row (no MAX over events), and set-based writers (expiry, bulk cancel) bump it too.
    last_sequence = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("cancel_job", "Can cancel jobs")]
        constraints = [
            models.UniqueConstraint(fields=["company", "code"], name="job_code_unique_per_company"),
            models.CheckConstraint(
                condition=(Q(status=JobStatus.FAILED) & ~Q(failure_reason=""))
                | (~Q(status=JobStatus.FAILED) & Q(failure_reason="")),
                name="job_failure_reason_iff_failed",
            ),
            models.CheckConstraint(
                condition=Q(total_records__isnull=True)
                | Q(effected_records__lte=models.F("total_records")),
                name="job_effected_lte_total",
            ),
            models.CheckConstraint(condition=Q(expires_after__gte=1), name="job_expires_after_min"),
        ]
        # Every admin list view is index-backed (bench/scale.py: each filter, the code search,
        # each sortable column both ways, at 1M jobs as fast as at 1k). The admin orders by
        # the column, then newest first (-created_at, -id): "X" reads (X, -created_at, -id)
        # forward, "-X" reads (X, created_at, id) backward. A near-unique column needs only
        # itself: its rare ties are sorted in passing (PostgreSQL's incremental sort).
        indexes = [
            models.Index(fields=["company", "-created_at", "-id"], name="job_company_created"),
            models.Index(fields=["company", "created_at", "id"], name="job_company_created_asc"),
            models.Index(
                fields=["company", "status", "-created_at"], name="job_company_status_created"
            ),
            models.Index(fields=["-created_at", "-id"], name="job_created"),
            # staff filters in the admin, each ordered like the list, and the sorts
            models.Index(fields=["status", "-created_at", "-id"], name="job_status_created"),
            models.Index(fields=["status", "created_at", "id"], name="job_status_created_asc"),
            models.Index(fields=["type", "-created_at", "-id"], name="job_type_created"),
            models.Index(fields=["type", "created_at", "id"], name="job_type_created_asc"),
            models.Index(
                fields=["failure_reason", "-created_at", "-id"], name="job_reason_created"
            ),
            models.Index(
                fields=["failure_reason", "created_at", "id"], name="job_reason_created_asc"
            ),
            # the search by code (exact) and the sort by code
            models.Index(fields=["code"], name="job_code"),
            # the sort by last activity; backward, the newest first, exactly (set-based
            # changes give a batch of jobs one last_activity_at)
            models.Index(fields=["last_activity_at", "created_at", "id"], name="job_activity"),
            models.Index(
                fields=["last_activity_at"],
                name="job_processing_activity",
                condition=Q(status="processing"),
            ),
            models.Index(
                fields=["expires_at"],
                name="job_active_expires_at",
                condition=Q(status__in=[JobStatus.PENDING, JobStatus.PROCESSING]),
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class EventStatus(models.TextChoices):
    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"


class EventSource(models.TextChoices):
    API = "api"
    ADMIN = "admin"
    SYSTEM = "system"


class JobEventKind(models.TextChoices):
    """What a ``JobEvent`` records. Only ``timeline`` entries are numbered and shown."""

    TIMELINE = "timeline"  # a status change, progress or creation: the job's timeline
    PUSH_RESULT = "push_result"  # a push result was stored (``data`` is its representation)
    REPORT_READY = "report_ready"  # the job's report was built


class JobEvent(models.Model):
    """One entry of a job's append-only event log, which is also the outbox.

    The job change and its event commit together; the relay (``jobs.relay``) turns each event
    into its effects (webhook deliveries, report builds) in the worker and sets ``relayed_at``.
    Timeline entries carry a ``sequence``; push results and report readiness are logged as
    unnumbered events of their own ``kind`` that the timeline does not show.
    """

    # indexed by job_event_sequence_unique (job, sequence)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(
        max_length=16, choices=JobEventKind.choices, default=JobEventKind.TIMELINE
    )
    sequence = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=32, choices=EventStatus.choices, blank=True)
    failure_reason = models.CharField(
        max_length=64, choices=FailureReason.choices, blank=True, default=""
    )
    message = models.TextField(blank=True, default="")
    # What else the event changed (counts, metadata), for the timeline.
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # job_event_actor: only the events that have one
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The job's representation as of this event, written with it: the webhook payload is built
    # from it, so it shows the job as the event left it however late the relay runs. Cleared
    # once relayed (the deliveries hold their own payloads).
    snapshot = models.JSONField(null=True, blank=True)
    # null until the relay has turned the event into its effects
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["job", "sequence"], name="job_event_sequence_unique"),
            models.CheckConstraint(
                condition=(Q(kind="timeline") & Q(sequence__isnull=False))
                | (~Q(kind="timeline") & Q(sequence__isnull=True)),
                name="job_event_sequence_iff_timeline",
            ),
        ]
        indexes = [
            # the relay's claim (ORDER BY id) and the sweep: only unrelayed rows are indexed
            models.Index(
                fields=["id"], name="job_event_unrelayed", condition=Q(relayed_at__isnull=True)
            ),
            # a deleted user's events (SET_NULL); most events have no actor
            models.Index(
                fields=["actor"], name="job_event_actor", condition=Q(actor__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.sequence} {self.status}"


class PushStatus(models.TextChoices):
    SUCCESS = "success"
    FAILED = "failed"


class PushResult(models.Model):
    """One push request reported by the accounting data service (seed 001)."""

    # indexed by push_result_job_received (job, received_at, id): a job's results in the order
    # they came (the list's cursor, the report); the list's cursor holds a time, not the id,
    # which counts every company's results
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="push_results", db_index=False
    )
    push_communication_id = models.CharField(max_length=128)
    connection_id = models.CharField(max_length=255, blank=True, default="")
    business_name = models.CharField(max_length=255, blank=True, default="")
    service_name = models.CharField(max_length=255, blank=True, default="")
    data_type = models.CharField(max_length=255, blank=True, default="")
    source_object_ids = models.JSONField(default=list, blank=True)
    requested_on = models.DateTimeField(null=True, blank=True)
    completed_on = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=PushStatus.choices)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    validation_errors = models.JSONField(default=list, blank=True)
    service_account_ref = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=255, blank=True, default="")
    # keys of the payload's ``data`` that this version does not read (a typo, or a new field)
    ignored_fields = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "push_communication_id"], name="push_result_id_unique_per_job"
            ),
        ]
        indexes = [
            models.Index(fields=["job", "received_at", "id"], name="push_result_job_received"),
            models.Index(fields=["job", "status"], name="push_result_job_status"),
        ]

    def __str__(self) -> str:
        return self.push_communication_id


class IdempotencyKey(models.Model):
    """The first answer to a POST sent with an ``Idempotency-Key``, replayed for repeats."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    # null while the first request is still being answered
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
        ]

    def __str__(self) -> str:
        return self.key


# --- push results straight from the accounting data service (seed 001) -----------------------


class PushIngestKey(models.Model):
    """A company's ingest URL for the accounting data service's push webhooks: its secret.

    The sender signs each webhook with this secret (``Railz-Signature: t=…,v=<HMAC-SHA256>``);
    the ingest answers 401 to anything else. After a rotation the previous secret keeps
    verifying for a while, so webhooks signed before the sender switched still land.
    """

    company = models.OneToOneField(
        Company, on_delete=models.CASCADE, primary_key=True, related_name="push_ingest_key"
    )
    secret = models.CharField(max_length=200)
    previous_secret = models.CharField(max_length=200, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"push ingest of {self.company_id}"


class PushCorrelationKind(models.TextChoices):
    PUSH_COMMUNICATION_ID = "push_communication_id"  # one push (``data.pushCommunicationId``)
    REQUEST_ID = "request_id"  # the pushes of one request (``requestId``)


class PushCorrelation(models.Model):
    """An id the integration got when it started a push, registered on its job.

    A push result that comes to the company's ingest URL with this id belongs to the job.
    """

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="push_correlations")
    kind = models.CharField(max_length=32, choices=PushCorrelationKind.choices)
    value = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "kind", "value"], name="push_correlation_unique_per_company"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


class UnmatchedPush(models.Model):
    """A push result that reached the ingest URL before its job registered its correlation.

    Kept (one per ``push_communication_id`` and company: a repeat is the same push) until the
    registration comes; then it is recorded on the job and ``job``/``attached_at`` are set.
    """

    company = models.ForeignKey(Company, on_delete=models.CASCADE, related_name="+")
    push_communication_id = models.CharField(max_length=128)
    request_id = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=PushStatus.choices)
    # The push as validated (jobs.ingest: push_data_to_json), recorded as is on attachment.
    data = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    attached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "unmatched pushes"
        constraints = [
            models.UniqueConstraint(
                fields=["company", "push_communication_id"], name="unmatched_push_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["company", "request_id"],
                name="unmatched_push_waiting",
                condition=Q(attached_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.push_communication_id
