"""Domain errors raised by the job services; the API turns each into a problem document."""

from typing import ClassVar


class JobError(Exception):
    """Base class: ``code`` is stable for clients, ``status`` the HTTP status it maps to."""

    code: ClassVar[str] = "job_error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Job error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


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
