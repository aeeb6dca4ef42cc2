"""Push results straight from the accounting data service: the ingest URL, its secret, and the
correlations the integration registers on its jobs (thin views over ``jobs.ingest``)."""

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.problems import ProblemError
from config.schema import AUTH_ERRORS, BAD_REQUEST, IDEMPOTENCY_ERRORS, NOT_FOUND, error
from config.schema import problem_example as example

from . import ingest
from .api import JOB_ID, PUSH_SUCCESS_EXAMPLE, CompanyAPIView, _valid
from .errors import IngestSignatureInvalid
from .idempotency import idempotent
from .models import Company, PushCorrelation, PushIngestKey
from .representation import iso_datetime, push_result_representation
from .serializers import (
    IngestedSerializer,
    IngestSecretInput,
    PushCorrelationInput,
    PushCorrelationSerializer,
    PushCorrelationsRegisteredSerializer,
    PushEventInput,
    PushIngestSerializer,
    PushIngestWithSecretSerializer,
    push_result_data,
)

COMPANY_ID = OpenApiParameter(
    "company_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="Your company's id (from the token)",
)
SIGNATURE = OpenApiParameter(
    ingest.SIGNATURE_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="`t=<timestamp, ms>,v=<hex HMAC-SHA256 of '<t>.<raw body>' keyed with your "
    "push ingest secret>`, as the accounting data service signs its webhooks.",
)
AUTH_CHALLENGE = f'{ingest.SIGNATURE_HEADER} realm="push-ingest"'
# seed 001's failed example (it spells the ids' field sourceObjectId)
PUSH_FAILED_EXAMPLE = {
    "data": {
        "event": "push",
        "connectionId": "CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
        "businessName": "BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
        "serviceName": "quickbooks",
        "dataType": "invoices",
        "pushCommunicationId": "60473b57f0cdd1683ca71f60",
        "sourceObjectId": ["354"],
        "requestedOn": "2021-03-09T19:56:03.952Z",
        "completedOn": "2021-03-09T19:56:03.952Z",
        "status": "failed",
        "responseCode": 400,
        "serviceAccountRef": {"id": "DEV", "entityRef": {"id": "100"}},
        "validation": {
            "errors": [
                {
                    "field": "currencyRef",
                    "message": "Business Validation Error: Multi Currency should be enabled to "
                    "perform this operation.",
                }
            ]
        },
    },
    "requestId": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a",
}


def ingest_url(company: Company) -> str:
    """The absolute URL the accounting data service is configured with."""
    path = reverse("api-v1:push-ingest", args=[company.pk])
    return settings.JOBTRAIL_PUBLIC_URL.rstrip("/") + path


def _settings_body(company: Company, key: Any) -> dict[str, Any]:
    return {
        "url": ingest_url(company),
        "signature_header": ingest.SIGNATURE_HEADER,
        "secret_configured": key is not None,
        "previous_secret_expires_at": iso_datetime(key.previous_secret_expires_at)
        if key is not None and key.previous_secret
        else None,
    }


class PushIngestView(APIView):
    """The company's ingest URL: no Jobtrail token; the sender's signature authenticates."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["push results"],
        summary="Receive a push status webhook from the accounting data service",
        description="Configure this URL once in the accounting data service. The body is its "
        "push webhook as it sends it (both `sourceObjectIds` and `sourceObjectId` are read). "
        "No bearer token: the `Railz-Signature` header signed with your push ingest secret "
        "(`POST /api/v1/push-ingest/rotate-secret/`) authenticates it; anything else is 401. "
        "The push lands on the job that registered its `pushCommunicationId` or `requestId` "
        "(`POST /api/v1/jobs/{id}/push-correlations/`): 201 `attached`, 200 `duplicate` for a "
        "repeat. A push that comes before its registration answers 202 `unmatched`: it is "
        "kept and recorded on its job when the registration arrives.",
        auth=[],
        parameters=[COMPANY_ID, SIGNATURE],
        request=PushEventInput,
        examples=[
            OpenApiExample("success", value=PUSH_SUCCESS_EXAMPLE, request_only=True),
            OpenApiExample("failed", value=PUSH_FAILED_EXAMPLE, request_only=True),
        ],
        responses={
            201: OpenApiResponse(IngestedSerializer, description="Recorded on its job."),
            200: OpenApiResponse(IngestedSerializer, description="Already recorded (a repeat)."),
            202: OpenApiResponse(
                IngestedSerializer, description="No job registered it yet: kept until one does."
            ),
            **BAD_REQUEST,
            401: error(
                401,
                "Missing or wrong signature, or a timestamp too far from now.",
                example(401, "invalid_signature", "A valid Railz-Signature header is required."),
            ),
            429: AUTH_ERRORS[429],
        },
    )
    def post(self, request: Request, company_id: Any) -> Response:
        body = request.body  # the raw bytes the signature covers, before parsing
        try:
            company = ingest.ingest_verify(
                company_id=company_id,
                body=body,
                header=request.headers.get(ingest.SIGNATURE_HEADER),
            )
        except IngestSignatureInvalid as exc:
            problem = ProblemError(exc.detail, status_code=exc.status, code=exc.code)
            problem.auth_header = AUTH_CHALLENGE  # type: ignore[attr-defined]
            raise problem from None
        data = push_result_data(_valid(PushEventInput, request.data))
        done = ingest.push_ingest(company=company, data=data)
        answer = {
            "status": done.outcome,
            "job_id": str(done.job_id) if done.job_id else None,
            "push_communication_id": data.push_communication_id,
            "push_result": push_result_representation(done.result) if done.result else None,
            "ignored_fields": data.ignored_fields,
        }
        code = {"attached": 201, "duplicate": 200, "unmatched": 202}[done.outcome]
        return Response(answer, status=code)


class PushIngestSettingsView(CompanyAPIView):
    @extend_schema(
        tags=["push results"],
        summary="Your push ingest URL and whether its secret is set",
        responses={200: PushIngestSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        key = PushIngestKey.objects.filter(company=self.company).first()
        return Response(_settings_body(self.company, key))


class PushIngestRotateSecretView(CompanyAPIView):
    @extend_schema(
        tags=["push results"],
        summary="Set or rotate the push ingest secret",
        description="`secret`: the one your accounting data service signs its webhooks with "
        "(it is not echoed back). Omitted, Jobtrail generates one and shows it in this answer "
        "only. The previous secret keeps verifying for 24 hours; rotate twice to drop it at "
        "once. Not replayed by `Idempotency-Key` (the answer may hold a secret).",
        request=IngestSecretInput,
        examples=[
            OpenApiExample(
                "the sender's secret",
                value={"secret": "the-webhook-secret-your-sender-shows-you"},
                request_only=True,
            ),
            OpenApiExample("generate one", value={}, request_only=True),
        ],
        responses={200: PushIngestWithSecretSerializer, **BAD_REQUEST, **AUTH_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = _valid(IngestSecretInput, request.data)
        key, secret = ingest.ingest_secret_set(company=self.company, secret=data.get("secret"))
        body = _settings_body(self.company, key)
        if not data.get("secret"):
            body["secret"] = secret
        return Response(body)


def _correlation(row: PushCorrelation) -> dict[str, Any]:
    return {"kind": row.kind, "value": row.value, "created_at": iso_datetime(row.created_at)}


class JobPushCorrelationsView(CompanyAPIView):
    @extend_schema(
        tags=["push results"],
        summary="The push ids registered on the job",
        parameters=[JOB_ID],
        responses={200: PushCorrelationSerializer(many=True), **NOT_FOUND, **AUTH_ERRORS},
    )
    def get(self, request: Request, job_id: Any) -> Response:
        job = self.get_job(job_id)
        return Response([_correlation(row) for row in job.push_correlations.order_by("id")])

    @extend_schema(
        tags=["push results"],
        summary="Register the ids of a push the integration started for this job",
        description="When the integration starts a push it gets `pushCommunicationId` (one push) "
        "and `requestId` back from the accounting data service: registering either (or both) "
        "here sends that push's results, arriving at your push ingest URL, to this job. Results "
        "that arrived first are recorded now (`attached`). Registering an id again is a no-op; "
        "an id registered on another job answers 409.",
        parameters=[JOB_ID],
        request=PushCorrelationInput,
        examples=[
            OpenApiExample(
                "push started",
                value={
                    "push_communication_id": "60473b57f0cdd1683ca71f60",
                    "request_id": "a3b4fc83-3e24-41aa-ba99-13cab09b0b7a",
                },
                request_only=True,
            )
        ],
        responses={
            201: PushCorrelationsRegisteredSerializer,
            **BAD_REQUEST,
            409: error(
                409,
                "The id is registered on another job of your company.",
                example(
                    409,
                    "push_correlation_taken",
                    "push_communication_id '60473b57f0cdd1683ca71f60' is registered on another "
                    "job of your company.",
                ),
            ),
            **NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request, job_id: Any) -> Response:
        data = self.valid_for_job(PushCorrelationInput, job_id)
        correlations, attached = ingest.push_correlation_register(
            job_id=job_id, company=self.company, **data
        )
        body = {
            "job_id": str(job_id),
            "correlations": [_correlation(row) for row in correlations],
            "attached": attached,
        }
        return Response(body, status=status.HTTP_201_CREATED)
