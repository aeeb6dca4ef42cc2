from django.urls import path

from config import converters  # noqa: F401  (registers uuid_ci)
from webhooks import api as webhooks_api

from . import api, ingest_api
from .compat.views import ExportJobEventsView

app_name = "api-v1"

urlpatterns = [
    path("auth/token/", api.TokenObtainView.as_view(), name="token"),
    path("auth/token/refresh/", api.TokenRefreshView_.as_view(), name="token-refresh"),
    path("jobs/", api.JobCollectionView.as_view(), name="job-list"),
    path("jobs/<uuid_ci:job_id>/", api.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid_ci:job_id>/events/", api.JobEventsView.as_view(), name="job-events"),
    path("jobs/<uuid_ci:job_id>/cancel/", api.JobCancelView.as_view(), name="job-cancel"),
    path(
        "jobs/<uuid_ci:job_id>/push-results/",
        api.JobPushResultsView.as_view(),
        name="job-push-results",
    ),
    path("jobs/<uuid_ci:job_id>/report/", api.JobReportView.as_view(), name="job-report"),
    path(
        "jobs/<uuid_ci:job_id>/push-correlations/",
        ingest_api.JobPushCorrelationsView.as_view(),
        name="job-push-correlations",
    ),
    path("push-ingest/", ingest_api.PushIngestSettingsView.as_view(), name="push-ingest-settings"),
    path(
        "push-ingest/rotate-secret/",
        ingest_api.PushIngestRotateSecretView.as_view(),
        name="push-ingest-rotate-secret",
    ),
    path(
        "push-ingest/<uuid_ci:company_id>/",
        ingest_api.PushIngestView.as_view(),
        name="push-ingest",
    ),
    path("export-job-events/", ExportJobEventsView.as_view(), name="export-job-events"),
    path(
        "webhook-endpoints/",
        webhooks_api.EndpointCollectionView.as_view(),
        name="webhook-endpoint-list",
    ),
    path(
        "webhook-endpoints/<uuid_ci:endpoint_id>/",
        webhooks_api.EndpointDetailView.as_view(),
        name="webhook-endpoint-detail",
    ),
    path(
        "webhook-endpoints/<uuid_ci:endpoint_id>/rotate-secret/",
        webhooks_api.EndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path(
        "webhook-endpoints/<uuid_ci:endpoint_id>/redeliver-failed/",
        webhooks_api.EndpointRedeliverFailedView.as_view(),
        name="webhook-endpoint-redeliver-failed",
    ),
    path(
        "webhook-deliveries/",
        webhooks_api.DeliveryCollectionView.as_view(),
        name="webhook-delivery-list",
    ),
    path(
        "webhook-deliveries/<uuid_ci:delivery_id>/",
        webhooks_api.DeliveryDetailView.as_view(),
        name="webhook-delivery-detail",
    ),
    path(
        "webhook-deliveries/<uuid_ci:delivery_id>/redeliver/",
        webhooks_api.DeliveryRedeliverView.as_view(),
        name="webhook-delivery-redeliver",
    ),
    path("webhook-event-types/", webhooks_api.EventTypesView.as_view(), name="webhook-event-types"),
]
