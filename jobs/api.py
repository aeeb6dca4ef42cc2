"""The v1 REST API: one thin view per use case over ``services`` and ``selectors``."""

import uuid
from datetime import UTC
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.signals import setting_changed
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from config import schema_examples
from config.schema import (
    AUTH_ERRORS,
    BAD_REQUEST,
    CONFLICT,
    IDEMPOTENCY_ERRORS,
    IDEMPOTENCY_KEY,
    NOT_FOUND,
    AccessTokenSerializer,
    RefreshInputSerializer,
    TokenPairSerializer,
    error,
    location,
    paginated,
    problem_example,
    retry_after,
)
from reports.links import job_report, report_state

from . import selectors, services
from .auth import AuthRateThrottle, IsCompanyClient
from .errors import ReportNotReady
from .idempotency import idempotent
from .models import Company, EventSource, Job
from .representation import (
    UNSET,
    job_event_representation,
    job_representation,
    push_result_representation,
)
from .serializers import (
    CancelInput,
    EventCreateInput,
    JobCreateInput,
    JobEventCreatedSerializer,
    JobEventSerializer,
    JobListFilters,
    JobProgressInput,
    JobSerializer,
    PushEventInput,
    PushRecordedSerializer,
    PushResultListFilters,
    PushResultSerializer,
    push_result_data,
)

# --- pagination -------------------------------------------------------------------------------


class Cursor(CursorPagination):
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    # the ordering's first field is a time (its position is read in UTC)
    time_position = False

    def get_page_size(self, request: Request) -> int:
        """``page_size``: 1 to ``max_page_size``; anything else is refused (DRF would quietly
        use the default), as the document's bounds say."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError(
                {"page_size": [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
            if self.time_position and cursor is not None and cursor.position is not None:
                # a time as text (DRF's stubs type a position as int)
                position: Any = _utc_position(str(cursor.position))
                cursor = cursor._replace(position=position)
            return cursor
        except (NotFound, ValueError, OverflowError):
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            # a cursor that decodes but carries a position the ordering field cannot hold
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None


def _utc_position(position: str) -> str:
    """A cursor's time position in UTC: the client holds the cursor, and an offset Python takes
    but PostgreSQL does not (beyond ±15:59) would otherwise fail the query (a 500)."""
    moment = parse_datetime(position)
    if moment is None:
        raise ValueError(position)
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


class JobCursor(Cursor):
    ordering = ("-created_at", "-id")
    time_position = True


class SequenceCursor(Cursor):
    ordering = ("sequence",)


class ReceivedCursor(Cursor):
    """A job's push results in the order they came. Its position is a time: an id position
    would tell the client how many push results every other company recorded between two of
    its own (the ids count them all)."""

    ordering = ("received_at", "id")
    time_position = True


class TokenObtainView(TokenObtainPairView):
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Get an access and a refresh token",
        examples=[
            OpenApiExample(
                "credentials", value={"username": "demo", "password": "..."}, request_only=True
            )
        ],
        responses={
            200: OpenApiResponse(
                TokenPairSerializer, description="`{access, refresh}`; access carries company_id."
            ),
            400: BAD_REQUEST[400],
            401: error(
                401,
                "Wrong username or password, an inactive user, or a user who may not use the "
                "API (no company): one answer for all, so it confirms no password.",
                problem_example(
                    401,
                    "authentication_failed",
                    "No active account found with the given credentials",
                ),
            ),
            429: AUTH_ERRORS[429],
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class TokenRefreshView_(TokenRefreshView):
    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Exchange a refresh token for a new access token",
        request=RefreshInputSerializer,
        examples=[
            OpenApiExample(
                "refresh", value={"refresh": "eyJhbGciOiJIUzI1NiIs..."}, request_only=True
            ),
            OpenApiExample(
                "access", value={"access": "eyJhbGciOiJIUzI1NiIs..."}, response_only=True
            ),
        ],
        responses={
            200: OpenApiResponse(AccessTokenSerializer, description="`{access}`"),
            400: BAD_REQUEST[400],
            401: AUTH_ERRORS[401],
            429: AUTH_ERRORS[429],
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class CompanyAPIView(APIView):
    """Base view: authenticated API client; ``self.company`` is the only data it may see."""

    permission_classes = [IsCompanyClient]
    company: Company
    # The URL keyword of the one job a request reads (see ``job_read_with_client``), and the
    # methods that read it: a GET reads it; a job change (the event POST, the progress PATCH)
    # starts from it (``services._job_change``'s first try).
    reads_job_kwarg: str | None = None
    reads_job_methods: frozenset[str] = frozenset({"GET"})

    def job_read_with_client(self, request: Request) -> tuple[str, Any] | None:
        """``(field, value)`` of the one job this request reads, if it only reads one: the
        authentication reads it with the API client, in the same statement (a poll is one
        query). None: the view reads what it needs itself."""
        if self.reads_job_kwarg and request.method in self.reads_job_methods:
            return ("id", self.kwargs.get(self.reads_job_kwarg))
        return None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.company = request.user.jobtrail_company  # type: ignore[union-attr]

    @property
    def actor(self) -> User:
        return cast(User, self.request.user)

    def get_job(self, job_id: Any) -> Job:
        return selectors.job_get(company=self.company, job_id=job_id, read_with=self.request.user)

    def job_response(
        self,
        job: Job,
        *,
        status_code: int = 200,
        report: Any = UNSET,
        body: dict[str, Any] | None = None,
        **headers: str,
    ) -> Response:
        """Answer ``job`` as it is in memory (a service returns it updated: no second read);
        ``body``: its representation when already built (a change's event snapshot)."""
        if body is None:
            body = job_representation(job, report=report)
        return polled(Response(body, status=status_code, headers=headers or None), job)

    def valid_for_job(self, serializer_class: type, job_id: Any) -> dict[str, Any]:
        """The validated body; an unknown job answers 404 before a bad body's 400.

        The job itself is read (and locked) once, by the service: this looks it up only when
        the body is refused, to keep the answer an unknown job has always had.
        """
        try:
            serializer = serializer_class(data=self.request.data)
            if serializer.is_valid():
                return dict(serializer.validated_data)
        except ParseError:
            self.get_job(job_id)
            raise
        self.get_job(job_id)
        raise ValidationError(serializer.errors)


# The detail path of a job around its id, per (urlconf, script prefix): ``reverse`` resolves
# the pattern on every call (a third of a millisecond); a UUID converts to its ``str``.
_JOB_PATH: dict[tuple[Any, str], tuple[str, str]] = {}
_SAMPLE_ID = uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF)


def job_path(job_id: uuid.UUID) -> str:
    """``reverse("api-v1:job-detail", args=[job_id])``, the pattern resolved once."""
    key = (get_urlconf(), get_script_prefix())
    around = _JOB_PATH.get(key)
    if around is None:
        sample = reverse("api-v1:job-detail", args=[_SAMPLE_ID])
        before, found, after = sample.partition(str(_SAMPLE_ID))
        if not found:  # pragma: no cover - the pattern does not show the id as str(uuid)
            return reverse("api-v1:job-detail", args=[job_id])
        around = _JOB_PATH[key] = (before, after)
    return f"{around[0]}{job_id}{around[1]}"


def _forget_job_paths(*, setting: str, **kwargs: Any) -> None:
    if setting == "ROOT_URLCONF":
        _JOB_PATH.clear()


setting_changed.connect(_forget_job_paths)


def polled(response: Response, job: Job, *, more_to_come: bool = False) -> Response:
    """Tell pollers when to ask again (``Retry-After``) while the job is not finished, or while
    the answer still lacks something on its way (``more_to_come``: a finished job's report)."""
    if more_to_come or not job.is_terminal:
        response["Retry-After"] = str(settings.JOBTRAIL_POLL_INTERVAL)
    return response


def _valid(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


JOB_EXAMPLE = schema_examples.JOB  # one example job for the document (config.schema_examples)
JOB_ID = OpenApiParameter(
    "job_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The job's UUID"
)
RETRY_AFTER_NOTE = "While the job is not finished the answer carries `Retry-After` (seconds)."


# --- jobs -------------------------------------------------------------------------------------


class JobCollectionView(CompanyAPIView):
    @extend_schema(
        tags=["jobs"],
        summary="List jobs",
        parameters=[
            JobListFilters,
        ],
        responses={200: paginated(JobSerializer), 400: BAD_REQUEST[400], **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(JobListFilters, request.query_params)
        jobs = selectors.job_list(company=self.company, **filters)
        paginator = JobCursor()
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(
        tags=["jobs"],
        summary="Create a job",
        parameters=[IDEMPOTENCY_KEY, location(201), retry_after(201)],
        request=JobCreateInput,
        examples=[
            OpenApiExample(
                "export job",
                value={"type": "export", "total_records": 773, "metadata": {"batch": "2026-11"}},
                request_only=True,
            ),
            OpenApiExample("job", value={**JOB_EXAMPLE, "status": "pending"}, response_only=True),
        ],
        responses={
            201: JobSerializer,
            **BAD_REQUEST,
            409: error(
                409,
                "The code is already used by another job of your company.",
                problem_example(
                    409, "job_code_taken", "A job with code 'EXPORT-1' already exists."
                ),
            ),
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent(own_commit=True)
    def post(self, request: Request) -> Response:
        data = _valid(JobCreateInput, request.data)
        job = services.job_create(company=self.company, actor=self.actor, **data)
        location = request.build_absolute_uri(job_path(job.pk))
        return self.job_response(
            job, status_code=status.HTTP_201_CREATED, report=None, Location=location
        )


class JobDetailView(CompanyAPIView):
    reads_job_kwarg = "job_id"
    reads_job_methods = frozenset({"GET", "PATCH"})

    @extend_schema(
        tags=["jobs"],
        summary="Get a job",
        description=RETRY_AFTER_NOTE,
        parameters=[JOB_ID, retry_after(200)],
        examples=[OpenApiExample("job", value=JOB_EXAMPLE, response_only=True)],
        responses={200: JobSerializer, **NOT_FOUND, **AUTH_ERRORS},
    )
    def get(self, request: Request, job_id: Any) -> Response:
        return self.job_response(self.get_job(job_id))

    @extend_schema(
        tags=["jobs"],
        summary="Report progress (counts, message, metadata)",
        description="Adds a `progress` event. `status` is not patchable: post an event.",
        parameters=[JOB_ID, retry_after(200)],
        request=JobProgressInput,
        examples=[
            OpenApiExample(
                "progress",
                value={"effected_records": 120, "message": "120/773 pushed"},
                request_only=True,
            )
        ],
        responses={200: JobSerializer, **BAD_REQUEST, **CONFLICT, **NOT_FOUND, **AUTH_ERRORS},
    )
    def patch(self, request: Request, job_id: Any) -> Response:
        data = self.valid_for_job(JobProgressInput, job_id)
        event = services.job_record_progress(
            job_id=job_id,
            company=self.company,
            source=EventSource.API,
            actor=self.actor,
            read_with=request.user,
            **data,
        )
        # the event's snapshot is the job as this change left it: the answer
        return self.job_response(event.job, body=event.snapshot)


class JobEventsView(CompanyAPIView):
    reads_job_kwarg = "job_id"
    reads_job_methods = frozenset({"GET", "POST"})

    @extend_schema(
        tags=["jobs"],
        summary="The job's timeline, by sequence",
        parameters=[JOB_ID],
        responses={
            200: paginated(JobEventSerializer),
            400: BAD_REQUEST[400],
            **NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request, job_id: Any) -> Response:
        job = self.get_job(job_id)
        paginator = SequenceCursor()
        page = paginator.paginate_queryset(selectors.job_event_list(job=job), request, view=self)
        return paginator.get_paginated_response(JobEventSerializer(page, many=True).data)

    @extend_schema(
        tags=["jobs"],
        summary="Report a lifecycle event",
        description="`failure_reason` is required for `failed` and refused otherwise. A finished "
        "job refuses any later event with 409 `job_finished` (an exact replay with the same "
        "Idempotency-Key answers the original result).",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=EventCreateInput,
        examples=[
            OpenApiExample("started", value={"status": "started"}, request_only=True),
            OpenApiExample(
                "failed",
                value={"status": "failed", "failure_reason": "accounting_system_unreachable"},
                request_only=True,
            ),
            OpenApiExample(
                "completed",
                value={"status": "completed", "effected_records": 773},
                request_only=True,
            ),
        ],
        responses={
            201: JobEventCreatedSerializer,
            **BAD_REQUEST,
            **CONFLICT,
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent(own_commit=True)
    def post(self, request: Request, job_id: Any) -> Response:
        data = self.valid_for_job(EventCreateInput, job_id)
        event = services.job_apply_event(
            job_id=job_id,
            company=self.company,
            source=EventSource.API,
            actor=self.actor,
            read_with=request.user,
            **data,
        )
        # the event's snapshot is the job as this change left it: the answer's ``job``
        job = event.snapshot if event.snapshot is not None else job_representation(event.job)
        body = {**job_event_representation(event), "job": job}
        return Response(body, status=status.HTTP_201_CREATED)


class JobCancelView(CompanyAPIView):
    @extend_schema(
        tags=["jobs"],
        summary="Cancel a job",
        description="The job becomes `failed` / `canceled_by_user`; 409 once it is finished.",
        parameters=[JOB_ID, IDEMPOTENCY_KEY, retry_after(200)],
        request=CancelInput,
        examples=[
            OpenApiExample(
                "cancel", value={"message": "Customer asked to stop"}, request_only=True
            ),
            OpenApiExample(
                "canceled",
                value={
                    **JOB_EXAMPLE,
                    "status": "failed",
                    "failure_reason": "canceled_by_user",
                    "message": "Customer asked to stop",
                    "end_time": "2026-11-22T10:30:00.000000Z",
                    "expires_at": None,
                },
                response_only=True,
            ),
        ],
        responses={
            200: JobSerializer,
            **BAD_REQUEST,
            409: error(
                409,
                "The job is already finished: it cannot be cancelled.",
                problem_example(
                    409,
                    "job_finished",
                    "Job JOB-7F3K2Q9A is already finished (completed); it cannot be cancelled.",
                    title="Job already finished",
                ),
            ),
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request, job_id: Any) -> Response:
        data = self.valid_for_job(CancelInput, job_id)
        event = services.job_cancel(
            job_id=job_id,
            company=self.company,
            actor=self.actor,
            source=EventSource.API,
            **data,
        )
        return self.job_response(event.job)


PUSH_SUCCESS_EXAMPLE = {
    "data": {
        "event": "push",
        "connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
        "businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
        "serviceName": "quickbooks",
        "dataType": "invoices",
        "pushCommunicationId": "60473b57f0cdd1683ca71f60",
        "sourceObjectIds": ["354"],
        "requestedOn": "2021-03-09T19:56:03.952Z",
        "completedOn": "2021-03-09T19:56:03.952Z",
        "status": "success",
        "responseCode": 200,
        "serviceAccountRef": {"id": "DEV", "entityRef": {"id": "100"}},
    },
    "requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a",
}


class JobPushResultsView(CompanyAPIView):
    @extend_schema(
        tags=["push results"],
        summary="List the job's push results",
        parameters=[JOB_ID, PushResultListFilters],
        responses={
            200: paginated(PushResultSerializer),
            400: BAD_REQUEST[400],
            **NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request, job_id: Any) -> Response:
        job = self.get_job(job_id)
        filters = _valid(PushResultListFilters, request.query_params)
        paginator = ReceivedCursor()
        results = selectors.push_result_list(job=job, **filters)
        page = paginator.paginate_queryset(results, request, view=self)
        return paginator.get_paginated_response(PushResultSerializer(page, many=True).data)

    @extend_schema(
        tags=["push results"],
        summary="Record a push status (the accounting data service's webhook payload)",
        description="Body: the push status event as the accounting data service sends it. "
        "Unknown fields, in `data` (also inside `validation` and its `errors` items) or beside "
        "it, are accepted and listed back in `ignored_fields`; `sourceObjectId` is read as "
        "`sourceObjectIds` (listed when both come). A repeated "
        "`pushCommunicationId` answers 200 with the stored result.",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=PushEventInput,
        examples=[OpenApiExample("success", value=PUSH_SUCCESS_EXAMPLE, request_only=True)],
        responses={
            201: PushRecordedSerializer,
            200: OpenApiResponse(PushRecordedSerializer, description="Already recorded."),
            **BAD_REQUEST,
            **NOT_FOUND,
            413: error(
                413,
                "The push result is larger than JOBTRAIL_MAX_PUSH_RESULT_BYTES.",
                problem_example(
                    413,
                    "push_result_too_large",
                    "This push result is 900512 bytes as JSON; at most 65536 are kept.",
                    title="Push result too large",
                ),
            ),
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request, job_id: Any) -> Response:
        data = push_result_data(self.valid_for_job(PushEventInput, job_id))
        result, created = services.push_result_record(
            job_id=job_id, company=self.company, data=data
        )
        return Response(
            {**push_result_representation(result), "ignored_fields": data.ignored_fields},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class JobReportView(CompanyAPIView):
    @extend_schema(
        tags=["jobs"],
        summary="Download the job's CSV report",
        description="302 to a signed link that expires (JOBTRAIL_REPORT_LINK_TTL); 409 "
        "`report_not_ready` until the finished job's report is built.",
        parameters=[JOB_ID],
        responses={
            302: OpenApiResponse(description="Location: the signed download link."),
            409: error(
                409,
                "No report yet: the job is not finished, or the report is being built.",
                problem_example(
                    409, "report_not_ready", "The report of JOB-7F3K2Q9A is pending; retry later."
                ),
            ),
            **NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    def get(self, request: Request, job_id: Any) -> Response:
        job = self.get_job(job_id)
        state = report_state(job_report(job), job=job)  # pending until the relay asks
        if state["url"] is None:
            said = state["status"]
            if said == "none":
                said = f"not built (the job is {job.status})"
            raise ReportNotReady(f"The report of {job.code} is {said}; retry later.")
        return Response(status=status.HTTP_302_FOUND, headers={"Location": state["url"]})
