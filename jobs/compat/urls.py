from django.urls import path

from config import converters  # noqa: F401  (registers uuid_ci)

from . import views

urlpatterns = [
    path(
        "services/rest/v1/export/job/status",
        views.ExportJobStatusView.as_view(),
        name="compat-export-job-status",
    ),
    path("engine/api/api-jobs/<uuid_ci:job_id>", views.ApiJobView.as_view(), name="compat-api-job"),
]
