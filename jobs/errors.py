"""The domain errors of every app's services: one vocabulary, turned into problems in one place.

Each error carries a stable ``code``, the HTTP ``status`` it maps to and a ``title``;
``config.problems.exception_handler`` answers any of them as an RFC 9457 problem document, so
views neither catch nor translate them. Services of ``jobs``, ``webhooks`` and ``reports`` raise
these (this module imports nothing of theirs, so every app may import it).
"""

from typing import ClassVar


class JobError(Exception):
    """Base class: ``code`` is stable for clients, ``status`` the HTTP status it maps to."""

    code: ClassVar[str] = "job_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Job error"
    default_detail: ClassVar[str] = "The request cannot be carried out."

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        detail = detail or self.default_detail
        super().__init__(detail)
        self.detail = detail
        self.field = field


# --- jobs ---------------------------------------------------------------------------------------


class InvalidTransition(JobError):
    code = "invalid_transition"
    status = 409
    title = "Invalid status change"


class JobFinished(InvalidTransition):
    code = "job_finished"
    title = "Job already finished"


class InvalidFailureReason(JobError):
    code = "invalid_failure_reason"
    title = "Invalid failure reason"


class InvalidCounts(JobError):
    code = "invalid_counts"
    title = "Invalid record counts"


class DuplicateJobCode(JobError):
    code = "job_code_taken"
    status = 409
    title = "Job code already used"


class JobNotFound(JobError):
    """The job does not exist, or belongs to another company (which is the same to a client)."""

    code = "not_found"
    status = 404
    title = "Not found"
    default_detail = "No such job."


class PushCorrelationTaken(JobError):
    """A push id registered on one job cannot be registered on another of the company."""

    code = "push_correlation_taken"
    status = 409
    title = "Conflict"


class IngestSignatureInvalid(JobError):
    """A webhook at a company's push ingest URL without a valid signature of its secret."""

    code = "invalid_signature"
    status = 401
    title = "Not authenticated"


class ApiClientError(JobError):
    """An API client cannot be created or re-keyed as asked (``manage.py create_api_client``)."""

    code = "api_client_error"


class PushResultTooLarge(JobError):
    """A push result larger than JOBTRAIL_MAX_PUSH_RESULT_BYTES: it is stored several times
    (the result, its logged event, an idempotent answer, webhook payloads), so it is refused."""

    code = "push_result_too_large"
    status = 413
    title = "Push result too large"


# --- webhooks -----------------------------------------------------------------------------------


class WebhookEndpointLimit(JobError):
    """The company has JOBTRAIL_MAX_WEBHOOK_ENDPOINTS endpoints already (active or paused)."""

    code = "webhook_endpoint_limit"
    status = 409
    title = "Webhook endpoint limit reached"


class DeliveryInProgress(JobError):
    """A delivery cannot be sent now: an attempt of it is in flight (or it is no hand-off)."""

    code = "delivery_pending"
    status = 409
    title = "Conflict"


class EndpointNotFound(JobError):
    """The webhook endpoint does not exist, belongs to another company, or was deleted (a
    DELETE that committed after the caller looked it up)."""

    code = "not_found"
    status = 404
    title = "Not found"
    default_detail = "No such webhook endpoint."


class EndpointPaused(DeliveryInProgress):
    """A delivery cannot be sent now: its endpoint is paused (by staff, or disabled on a 410);
    resuming the endpoint sends what it holds."""

    code = "endpoint_paused"


class InvalidEndpoint(JobError):
    """An endpoint's settings do not fit together (a subscriber with no events)."""

    code = "invalid_endpoint"
    title = "Invalid webhook endpoint"


class IntegrationEndpointTaken(JobError):
    """A company has one integration endpoint (the one its jobs are handed off to)."""

    code = "integration_endpoint_exists"
    status = 409
    title = "Conflict"


# --- reports ------------------------------------------------------------------------------------


class ReportNotPossible(JobError):
    """Only a completed job has a report (a rebuild of another job's report is refused)."""

    code = "report_not_possible"
    status = 409
    title = "Conflict"


class ReportNotReady(JobError):
    code = "report_not_ready"
    status = 409
    title = "Conflict"


class LinkInvalid(JobError):
    """A report link that was tampered with, or whose report was rebuilt or is gone."""

    code = "not_found"
    status = 404
    title = "Not found"
    default_detail = "No such report."


class LinkExpired(JobError):
    code = "link_expired"
    status = 410
    title = "Gone"
    default_detail = (
        "This download link has expired; ask the API for a new one (GET /api/v1/jobs/{id}/report/)."
    )
