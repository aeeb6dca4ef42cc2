"""Seed-compatible endpoints: adapters over the same services and selectors as v1."""

import uuid
from typing import Any

from django.http import Http404
from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from config import strict_json
from config.parsers import check_text
from config.problems import ProblemError
from config.schema import (
    AUTH_ERRORS,
    BAD_REQUEST,
    IDEMPOTENCY_ERRORS,
    NOT_FOUND,
    error,
    problem_example,
    retry_after,
)
from jobs import selectors, services
from jobs.api import CompanyAPIView, _valid, polled
from jobs.errors import InvalidTransition, JobError, JobNotFound
from jobs.idempotency import idempotent
from jobs.models import EventSource, JobEvent
from reports.models import ReportStatus
from reports.services import job_report, report_state

from . import adapters
from .serializers import (
    ApiJobOutput,
    ExportJobEventInput,
    ExportJobEventOutput,
    ExportJobStatusInput,
    ExportJobStatusOutput,
)

INVALID_STATUS_CHANGE = "INVALID_EXPORT_JOB_STATUS_CHANGE"
SEED_FIELDS = {"failure_reason": "failureReason"}


class ExportJobEventsView(CompanyAPIView):
    @extend_schema(
        tags=["seed-compatible"],
        summary="Create an export job event (export job events API)",
        description="`jobId` is the job's id (or its code). `failureReason` is one of the 15 "
        "reasons, only with `failed`; in the newer form `failureReasonType` holds the reason and "
        "`failureReason` free text. An illegal status change answers 409 with type "
        f"`{INVALID_STATUS_CHANGE}`.",
        request=ExportJobEventInput,
        examples=[
            OpenApiExample(
                "started",
                value={"jobId": "0b6f3c52-5a1e-4f53-9d8e-5f0a3e1c2b7d", "event": "started"},
                request_only=True,
            ),
            OpenApiExample(
                "failed",
                value={
                    "jobId": "0b6f3c52-5a1e-4f53-9d8e-5f0a3e1c2b7d",
                    "event": "failed",
                    "failureReason": "accounting_system_unreachable",
                },
                request_only=True,
            ),
            OpenApiExample(
                "failed (newer form)",
                value={
                    "jobId": "0b6f3c52-5a1e-4f53-9d8e-5f0a3e1c2b7d",
                    "event": "failed",
                    "failureReasonType": "validation_failure",
                    "failureReason": "Account 4000 is archived",
                },
                request_only=True,
            ),
        ],
        responses={
            201: ExportJobEventOutput,
            **BAD_REQUEST,
            409: error(
                409,
                "The job's status cannot change this way (e.g. it is finished).",
                problem_example(
                    409,
                    "job_finished",
                    "Job JOB-7F3K2Q9A is already completed; it cannot become failed.",
                    type=INVALID_STATUS_CHANGE,
                    title="Job already finished",
                ),
            ),
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = _valid(ExportJobEventInput, request.data)
        if data.get("failureReasonType"):
            reason, message, reason_field = (
                data["failureReasonType"],
                data.get("failureReason") or "",
                "failureReasonType",
            )
        else:
            reason, message, reason_field = data.get("failureReason") or "", "", "failureReason"
        try:
            event = self._apply_event(
                data["jobId"],
                status=data["event"],
                failure_reason=reason,
                message=message,
                source=EventSource.API,
                actor=self.actor,
            )
        except InvalidTransition as exc:
            raise ProblemError(
                exc.detail,
                status_code=409,
                code=exc.code,
                title=exc.title,
                type=INVALID_STATUS_CHANGE,
            ) from exc
        except JobError as exc:
            field = reason_field if exc.field == "failure_reason" else exc.field
            detail = exc.detail.replace("failure_reason", reason_field).replace(
                "the status is", "the event is"
            )
            raise ProblemError(
                detail,
                status_code=exc.status,
                code=exc.code,
                title=exc.title,
                errors=[{"field": field or "", "message": detail}],
            ) from exc
        job = event.job
        body = {
            "jobId": job.pk,
            "jobCode": job.code,
            "event": event.status,
            "failureReason": event.failure_reason or None,
            "message": event.message,
            "sequence": event.sequence,
            "status": event.job.status,
            "createdAt": event.created_at,
        }
        return Response(ExportJobEventOutput(body).data, status=status.HTTP_201_CREATED)

    def _apply_event(self, ident: str, **event: Any) -> JobEvent:
        """Apply the event to the job ``ident`` names (its id, else its code): one job read.

        The service reads (and locks) the job by id; only an ident that is no id of this
        company's jobs is looked up as a code.
        """
        try:
            job_id = uuid.UUID(ident)
        except ValueError:
            pass
        else:
            try:
                return services.job_apply_event(job_id=job_id, company=self.company, **event)
            except JobNotFound:
                pass
        job = selectors.job_get_by_code(company=self.company, code=ident)
        if job is None:
            raise Http404("No such job.")
        return services.job_apply_event(job_id=job.pk, company=self.company, **event)


class ExportJobStatusView(CompanyAPIView):
    def job_read_with_client(self, request: Request) -> tuple[str, Any] | None:
        """The job of the body's ``jobCode``, read with the API client (one query a poll)."""
        try:
            body = strict_json.loads(request._request.body.decode())
            code = body.get("jobCode") if isinstance(body, dict) else None
            if not isinstance(code, str) or not code.strip():
                return None
            check_text(code)  # what the strict parser refuses, the database could not hold
        except (ValueError, RecursionError, RawPostDataException):
            return None  # the view answers a malformed body itself
        return ("code", code)

    @extend_schema(
        tags=["seed-compatible"],
        summary="Get export job status and report (export job status API)",
        parameters=[retry_after(200)],
        description="Answers `{successful, message, errors, warnings, status, filePath}`. An "
        "unknown `jobCode` answers HTTP 200 with `successful: false` and an error naming "
        "`jobCode`. `status`: SCHEDULED, RUNNING, SUCCESSFUL, FAILED or CANCELLED. SUCCESSFUL "
        "always comes with `filePath`, the signed CSV link (as the seed has it): a finished job "
        "whose report is still being built reads RUNNING, one whose report could not be built "
        "FAILED with an error naming `filePath`. `Retry-After` is sent while the answer is "
        "RUNNING or SCHEDULED: poll again.",
        request=ExportJobStatusInput,
        examples=[
            OpenApiExample("request", value={"jobCode": "JOB-7F3K2Q9A"}, request_only=True),
            OpenApiExample(
                "running",
                value={
                    "successful": True,
                    "message": "Export started",
                    "errors": [],
                    "warnings": [],
                    "status": "RUNNING",
                    "filePath": None,
                },
                response_only=True,
            ),
            OpenApiExample(
                "unknown code",
                value=adapters.export_job_status_error(
                    description="No export job with code 'NOPE' for your company.",
                    message="Invalid jobCode",
                ),
                response_only=True,
            ),
        ],
        responses={
            200: ExportJobStatusOutput,
            400: OpenApiResponse(
                ExportJobStatusOutput,
                description="The body is not JSON: the seed's error shape (`successful: "
                "false`, an error naming `jobCode`), as `application/json`.",
            ),
            **AUTH_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        try:
            body = request.data
        except ParseError:
            return Response(
                adapters.export_job_status_error(
                    description="The request body is not valid JSON.",
                    message="Invalid request",
                    code=400,
                ),
                status=status.HTTP_400_BAD_REQUEST,
            )
        code = body.get("jobCode") if isinstance(body, dict) else None
        if not isinstance(code, str) or not code.strip():
            return Response(
                adapters.export_job_status_error(
                    description="jobCode is required and must be a string.",
                    message="Invalid jobCode",
                    code=400,
                )
            )
        code = code.strip()  # as seed 000 reads its jobId; a code holds no spaces
        job = selectors.job_get_by_code(company=self.company, code=code, read_with=request.user)
        if job is None:
            return Response(
                adapters.export_job_status_error(
                    description=f"No export job with code '{code[:64]}' for your company.",
                    message="Invalid jobCode",
                )
            )
        report = report_state(job_report(job), job=job)
        return polled(
            Response(adapters.export_job_status(job, report=report)),
            job,
            more_to_come=report["status"] == ReportStatus.PENDING,  # RUNNING until the link
        )


class ApiJobView(CompanyAPIView):
    reads_job_kwarg = "job_id"

    @extend_schema(
        tags=["seed-compatible"],
        summary="Get an API job (bulk API job record)",
        parameters=[retry_after(200)],
        description="Exactly the fields of the API jobs schema; dates as `YYYY-MM-DD HH:MM:SS`. "
        "`completed_with_errors` reads as `completed`, with the failed records in `message`. "
        "`start_time`/`end_time` are null until set; stop polling once `end_time` is not null.",
        examples=[
            OpenApiExample(
                "completed",
                value={
                    "id": "43dbbc35-d114-4da5-a1c0-6abbea6d7bf5",
                    "type": "customer_case_bulk_update",
                    "company_id": "aff00be6-f734-4094-a8ae-62874485dac0",
                    "start_time": "2024-02-21 10:21:31",
                    "end_time": "2024-02-21 10:21:35",
                    "status": "completed",
                    "message": "",
                    "total_records": 773,
                    "effected_records": 770,
                    "created_at": "2024-02-21T10:21:31.000000Z",
                    "updated_at": "2024-02-21T10:21:35.000000Z",
                },
                response_only=True,
            )
        ],
        responses={200: ApiJobOutput, **NOT_FOUND, **AUTH_ERRORS},
    )
    def get(self, request: Request, job_id: Any) -> Response:
        job = self.get_job(job_id)
        return polled(Response(adapters.api_job(job)), job)
