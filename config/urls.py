from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ops.views import operations
from reports.views import ReportDownloadView

from .health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("healthz/operations", operations, name="healthz-operations"),
    path("reports/download/<str:token>/", ReportDownloadView.as_view(), name="report-download"),
    path("", include("jobs.compat.urls")),
]

handler404 = "config.problems.handler404"
handler500 = "config.problems.handler500"
