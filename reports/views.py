"""The signed report download link."""

from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken

from config.problems import ProblemError
from config.schema import error, problem_example
from jobs.auth import CompanyJWTAuthentication

from . import services


def _bearer_company(request: Request) -> Any:
    """The company of a valid bearer token sent along, else None (the link is enough)."""
    try:
        authenticated = CompanyJWTAuthentication().authenticate(request)
    except (AuthenticationFailed, InvalidToken):
        return None
    return getattr(authenticated[0], "jobtrail_company", None) if authenticated else None


class ReportDownloadView(APIView):
    """A pre-signed link: it needs no token, but a bearer of another company gets 404."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []  # a stale token must not break a signed link

    @extend_schema(
        tags=["reports"],
        summary="Download a report through its signed link",
        responses={
            200: OpenApiResponse(description="The CSV file (text/csv, attachment)."),
            404: error(404, "Tampered link.", problem_example(404, "not_found", "No such report.")),
            410: error(
                410, "Expired link.", problem_example(410, "link_expired", "This link has expired.")
            ),
        },
    )
    def get(self, request: Request, token: str) -> Any:
        report = services.report_from_token(token)  # LinkExpired: 410, LinkInvalid: 404
        company = _bearer_company(request)
        if company is not None and company.pk != report.job.company_id:
            raise ProblemError("No such report.", status_code=404, code="not_found")
        try:
            content = report.file.open("rb")
        except FileNotFoundError:
            raise ProblemError(
                "The report file is gone (being rebuilt?); ask the API for a new link.",
                status_code=404,
                code="report_file_missing",
            ) from None
        response = FileResponse(
            content,
            as_attachment=True,
            filename=services.report_filename(report),
            content_type="text/csv; charset=utf-8",
        )
        response["Cache-Control"] = "private, no-store"
        return response
