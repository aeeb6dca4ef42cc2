from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ops.views import metrics, operations
from reports.views import ReportDownloadView

from .health import healthz
from .problems import api_fallback


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """/favicon.ico, which browsers ask for on pages that name no icon (the API's JSON, say):
    the console's icon (looked up per request: the static manifest may not exist at import).
    A 302, not a 301: browsers keep a 301 for good, and the hashed file it names goes with the
    next deploy that changes the icon."""
    return HttpResponseRedirect(static("jobtrail/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("jobs.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # the split view serves its initialising script separately: no inline script (CSP)
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
    path("healthz/operations", operations, name="healthz-operations"),
    path("metrics", metrics, name="metrics"),
    path("reports/download/<str:token>/", ReportDownloadView.as_view(), name="report-download"),
    path("", include("jobs.compat.urls")),
    # last: any other path under the API prefixes answers a problem document, DEBUG or not
    re_path(r"^(?:api|services|engine)(?:/[\s\S]*)?$", api_fallback, name="api-fallback"),
]

handler400 = "config.problems.handler400"
handler404 = "config.problems.handler404"
handler500 = "config.problems.handler500"
