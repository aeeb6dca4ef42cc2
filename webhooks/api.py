"""Webhook endpoints, deliveries and event types in the v1 API (tenant-scoped, thin views)."""

from typing import Any

from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from config.schema import (
    AUTH_ERRORS,
    BAD_REQUEST,
    IDEMPOTENCY_ERRORS,
    error,
    location,
    paginated,
    problem_example,
)
from jobs.api import CompanyAPIView, Cursor, _valid
from jobs.idempotency import idempotent
from jobs.serializers import NoBodyInput

from . import selectors, services
from .events import EVENT_TYPES
from .serializers import (
    DeliveryDetailSerializer,
    DeliveryFilters,
    DeliverySerializer,
    EndpointInput,
    EndpointSerializer,
    EndpointUpdateInput,
    EndpointWithSecretSerializer,
    EventTypeSerializer,
    RedeliveredSerializer,
    RedeliverFailedInput,
)

ENDPOINT_NOT_FOUND = {
    404: error(
        404,
        "No such endpoint for your company.",
        problem_example(404, "not_found", "No such webhook endpoint."),
    )
}
DELIVERY_NOT_FOUND = {
    404: error(
        404,
        "No such delivery for your company.",
        problem_example(404, "not_found", "No such webhook delivery."),
    )
}
ENDPOINT_ID = OpenApiParameter("endpoint_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
DELIVERY_ID = OpenApiParameter("delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
SSRF_EXAMPLE = problem_example(
    400,
    "validation_error",
    "url: The address 127.0.0.1 is a loopback address.",
    title="Invalid request",
    errors=[
        {
            "field": "url",
            "message": "The address 127.0.0.1 is a loopback address.",
        }
    ],
)


# Never kept under an Idempotency-Key: a replay of a create or a rotation answers without it
# (the secret was shown once; rotate again to see a new one).
SECRET_FIELDS = ("secret",)


class CreatedCursor(Cursor):
    ordering = ("-created_at", "-id")
    time_position = True


class EndpointCollectionView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="List webhook endpoints (secrets are never listed)",
        responses={200: paginated(EndpointSerializer), 400: BAD_REQUEST[400], **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        paginator = CreatedCursor()
        page = paginator.paginate_queryset(
            selectors.endpoint_list(company=self.company), request, view=self
        )
        return paginator.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Register a webhook endpoint",
        description="The answer carries the signing `secret` (`whsec_…`): it is shown only now "
        "and on rotation (a replay with the same `Idempotency-Key` answers without it). Targets "
        "resolving to loopback, private, link-local or metadata addresses are refused. "
        "`role: integration` makes it the company's integration "
        "endpoint: it receives `jobs.create` for every new job (the hand-off), and a hand-off "
        "that fails for good fails its pending job with `authentication_failure` (401/403), "
        "`service_unreachable` or `service_timeout`. A company has one integration endpoint, "
        "and at most `JOBTRAIL_MAX_WEBHOOK_ENDPOINTS` endpoints (409 `webhook_endpoint_limit`).",
        request=EndpointInput,
        parameters=[location(201)],
        examples=[
            OpenApiExample(
                "endpoint",
                value={
                    "url": "https://example.com/hooks/jobtrail",
                    "events": ["jobs.completed", "jobs.failed"],
                    "description": "ERP sync",
                },
                request_only=True,
            ),
            OpenApiExample(
                "integration endpoint",
                value={
                    "url": "https://integration.example.com/jobtrail/jobs",
                    "role": "integration",
                    "events": ["jobs.failed"],
                },
                request_only=True,
            ),
        ],
        responses={
            201: EndpointWithSecretSerializer,
            400: error(400, "Invalid URL, unsafe target or unknown event.", SSRF_EXAMPLE),
            409: error(
                409,
                "The company has its integration endpoint already, or as many endpoints as it "
                "may (JOBTRAIL_MAX_WEBHOOK_ENDPOINTS).",
                problem_example(
                    409,
                    "integration_endpoint_exists",
                    "Your company already has an integration endpoint.",
                ),
                problem_example(
                    409,
                    "webhook_endpoint_limit",
                    "Your company has 16 webhook endpoints, the most it may have; delete one.",
                    title="Webhook endpoint limit reached",
                ),
            ),
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent(unstored_fields=SECRET_FIELDS)
    def post(self, request: Request) -> Response:
        data = _valid(EndpointInput, request.data)
        endpoint = services.endpoint_create(company=self.company, **data)
        location = request.build_absolute_uri(
            reverse("api-v1:webhook-endpoint-detail", args=[endpoint.pk])
        )
        return Response(
            EndpointWithSecretSerializer(endpoint).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )


class EndpointDetailView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="Get a webhook endpoint",
        parameters=[ENDPOINT_ID],
        responses={200: EndpointSerializer, **ENDPOINT_NOT_FOUND, **AUTH_ERRORS},
    )
    def get(self, request: Request, endpoint_id: Any) -> Response:
        endpoint = selectors.endpoint_get(company=self.company, endpoint_id=endpoint_id)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Change a webhook endpoint",
        description="Setting `is_active: true` re-enables an endpoint a 410 disabled.",
        parameters=[ENDPOINT_ID],
        request=EndpointUpdateInput,
        examples=[OpenApiExample("pause", value={"is_active": False}, request_only=True)],
        responses={
            200: EndpointSerializer,
            400: error(400, "Invalid URL, unsafe target or unknown event.", SSRF_EXAMPLE),
            409: error(
                409,
                "The company has an integration endpoint already.",
                problem_example(
                    409,
                    "integration_endpoint_exists",
                    "Your company already has an integration endpoint.",
                ),
            ),
            **ENDPOINT_NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    @transaction.atomic  # the answer is built before the commit (see jobs.idempotency)
    def patch(self, request: Request, endpoint_id: Any) -> Response:
        endpoint = selectors.endpoint_get(company=self.company, endpoint_id=endpoint_id)
        data = _valid(EndpointUpdateInput, request.data)
        endpoint = services.endpoint_update(endpoint=endpoint, **data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Delete a webhook endpoint (and its delivery log)",
        description="From the answer on, the endpoint and its deliveries are gone for your "
        "company (404), nothing more is sent to it, and it no longer counts toward the "
        "endpoint limit; the worker deletes their stored rows shortly after.",
        parameters=[ENDPOINT_ID],
        responses={204: None, **ENDPOINT_NOT_FOUND, **AUTH_ERRORS},
    )
    @transaction.atomic  # the answer is built before the commit (see jobs.idempotency)
    def delete(self, request: Request, endpoint_id: Any) -> Response:
        endpoint = selectors.endpoint_get(company=self.company, endpoint_id=endpoint_id)
        services.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="Rotate the signing secret",
        description="Returns the new secret (shown only now: a replay with the same "
        "`Idempotency-Key` answers without it). For 24 hours deliveries carry signatures by "
        "both the new and the previous secret.",
        parameters=[ENDPOINT_ID],
        request=None,
        responses={
            200: EndpointWithSecretSerializer,
            **BAD_REQUEST,
            **ENDPOINT_NOT_FOUND,
            **AUTH_ERRORS,
        },
    )
    @idempotent(unstored_fields=SECRET_FIELDS)
    def post(self, request: Request, endpoint_id: Any) -> Response:
        endpoint = selectors.endpoint_get(company=self.company, endpoint_id=endpoint_id)
        _valid(NoBodyInput, request.data)  # no body, or {}: a body is never ignored
        endpoint = services.endpoint_rotate_secret(endpoint=endpoint)
        return Response(EndpointWithSecretSerializer(endpoint).data)


class EndpointRedeliverFailedView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="Redeliver everything that failed for this endpoint since a time",
        description=(
            "Each delivery to this endpoint that failed and was created at or after `since` "
            "gets one more attempt, recorded as `manual`. A paused endpoint (or one disabled "
            "on a 410) answers 409 `endpoint_paused` and queues nothing: resume it first."
        ),
        parameters=[ENDPOINT_ID],
        request=RedeliverFailedInput,
        examples=[
            OpenApiExample("since", value={"since": "2026-11-22T00:00:00Z"}, request_only=True)
        ],
        responses={
            202: RedeliveredSerializer,
            409: error(
                409,
                "The endpoint is paused.",
                problem_example(
                    409,
                    "endpoint_paused",
                    "Its endpoint https://example.com is paused; resume the endpoint to send "
                    "them (what the endpoint holds goes out then).",
                    title="Conflict",
                ),
            ),
            **BAD_REQUEST,
            **ENDPOINT_NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request, endpoint_id: Any) -> Response:
        endpoint = selectors.endpoint_get(company=self.company, endpoint_id=endpoint_id)
        data = _valid(RedeliverFailedInput, request.data)
        # a paused endpoint: EndpointPaused (409)
        count = services.endpoint_redeliver_failed(endpoint=endpoint, since=data["since"])
        return Response({"redelivered": count}, status=status.HTTP_202_ACCEPTED)


class DeliveryCollectionView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="List webhook deliveries",
        parameters=[
            DeliveryFilters,
        ],
        responses={200: paginated(DeliverySerializer), 400: BAD_REQUEST[400], **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        filters = _valid(DeliveryFilters, request.query_params)
        paginator = CreatedCursor()
        page = paginator.paginate_queryset(
            selectors.delivery_list(company=self.company, **filters), request, view=self
        )
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryDetailView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="Get a delivery with its payload and attempts",
        parameters=[DELIVERY_ID],
        responses={200: DeliveryDetailSerializer, **DELIVERY_NOT_FOUND, **AUTH_ERRORS},
    )
    def get(self, request: Request, delivery_id: Any) -> Response:
        delivery = selectors.delivery_get(company=self.company, delivery_id=delivery_id)
        return Response(DeliveryDetailSerializer(delivery).data)


class DeliveryRedeliverView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="Send a delivery now, whatever its state",
        description=(
            "A delivered or failed delivery gets one more attempt now, recorded as `manual` "
            "(it does not start the retry schedule again). A delivery still retrying is made due "
            "now: its next scheduled attempt happens at once, counted as such, and if it fails "
            "the schedule carries on from there. A delivery whose attempt is in flight at "
            "this moment answers 409 `delivery_pending`: wait for that attempt's answer; one "
            "whose endpoint is paused (or disabled on a 410) answers 409 `endpoint_paused`: "
            "resume the endpoint, which sends what it holds. The "
            "body is the delivery as it is after the request (`status` `pending`, "
            "`next_attempt_at` now)."
        ),
        parameters=[DELIVERY_ID],
        request=None,
        responses={
            202: DeliverySerializer,
            409: error(
                409,
                "An attempt of this delivery is in flight right now, or its endpoint is paused.",
                problem_example(
                    409,
                    "delivery_pending",
                    "This delivery is being sent right now; wait for its answer.",
                    title="Conflict",
                ),
                problem_example(
                    409,
                    "endpoint_paused",
                    "Its endpoint https://example.com is paused; resume the endpoint to send it "
                    "(what the endpoint holds goes out then).",
                    title="Conflict",
                ),
            ),
            **BAD_REQUEST,
            **DELIVERY_NOT_FOUND,
            **IDEMPOTENCY_ERRORS,
            **AUTH_ERRORS,
        },
    )
    @idempotent
    def post(self, request: Request, delivery_id: Any) -> Response:
        delivery = selectors.delivery_get(company=self.company, delivery_id=delivery_id)
        _valid(NoBodyInput, request.data)  # no body, or {}: a body is never ignored
        # in flight: DeliveryInProgress; endpoint paused: EndpointPaused (409 each)
        services.delivery_send_now(delivery=delivery)
        delivery.refresh_from_db()
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class EventTypesView(CompanyAPIView):
    @extend_schema(
        tags=["webhooks"],
        summary="The webhook event ids",
        responses={200: EventTypeSerializer(many=True), **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response([{"id": key, "description": text} for key, text in EVENT_TYPES.items()])
