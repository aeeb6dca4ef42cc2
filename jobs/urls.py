from django.urls import path

from . import api
from .compat.views import ExportJobEventsView

app_name = "api-v1"

urlpatterns = [
    path("auth/token/", api.TokenObtainView.as_view(), name="token"),
    path("auth/token/refresh/", api.TokenRefreshView_.as_view(), name="token-refresh"),
    path("jobs/", api.JobCollectionView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", api.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/events/", api.JobEventsView.as_view(), name="job-events"),
    path("jobs/<uuid:job_id>/cancel/", api.JobCancelView.as_view(), name="job-cancel"),
    path(
        "jobs/<uuid:job_id>/push-results/",
        api.JobPushResultsView.as_view(),
        name="job-push-results",
    ),
    path("export-job-events/", ExportJobEventsView.as_view(), name="export-job-events"),
]
