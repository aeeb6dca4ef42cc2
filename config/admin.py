"""The staff console: the admin site with a dashboard, and a paginator for huge tables."""

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString


def exact_time(value: datetime | None, *, relative: str = "beside") -> SafeString | str:
    """A timestamp to the second with its timezone (UTC), and how long ago it is.

    ``2026-11-23 07:32:05 UTC`` in a ``<time>`` element (ISO in ``datetime``); the time from
    now as of the page's rendering ("3 minutes ago", "10 hours from now") beside it
    (``relative="beside"``) or as its tooltip (``"title"``: list columns stay narrow).
    """
    if value is None:
        return "—"
    from django.contrib.humanize.templatetags.humanize import naturaltime

    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    ago = naturaltime(value)
    if relative == "title":
        return format_html('<time datetime="{}" title="{}">{}</time>', utc.isoformat(), ago, text)
    return format_html(
        '<time datetime="{}">{}</time> <span class="jt-ago">({})</span>',
        utc.isoformat(),
        text,
        ago,
    )


def exact_time_field(name: str, description: str | None = None, *, relative: str = "beside") -> Any:
    """An admin display method showing the datetime field ``name`` with ``exact_time``."""

    @admin.display(description=description or name.replace("_", " "), ordering=name)
    def show(model_admin: Any, obj: Any) -> SafeString | str:
        return exact_time(getattr(obj, name), relative=relative)

    return show


class EstimatedCountPaginator(Paginator):
    """On PostgreSQL, page counts of big result sets come from the planner, not COUNT(*)."""

    exact_below = 10_000

    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        if connections[queryset.db].vendor == "postgresql":
            plan = json.loads(queryset.order_by().explain(format="json"))
            estimate = int(plan[0]["Plan"]["Plan Rows"])
            if estimate >= self.exact_below:
                return estimate
        return super().count


class JobtrailAdminSite(admin.AdminSite):
    site_header = "Jobtrail"
    site_title = "Jobtrail staff console"
    index_title = "Dashboard"
    # The app list is on the dashboard and in the breadcrumbs: the left sidebar's 280 px go to
    # the change lists instead (every list fits 1280 px without scrolling sideways).
    enable_nav_sidebar = False

    def _dashboard(self, request: HttpRequest) -> dict[str, Any]:
        """The dashboard's context: figures for staff who may view jobs, the operations panel
        for every staff user (the admin lets in staff only)."""
        from jobs.dashboard import dashboard_context
        from ops.services import operations_panel

        context: dict[str, Any] = {"ops": operations_panel()}
        if request.user.has_perm("jobs.view_job"):
            context["dashboard"] = dashboard_context(request.GET.get("window"))
        else:
            context["dashboard"] = None
        context["window_query"] = request.GET.get("window", "")
        return context

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {**(extra_context or {}), **self._dashboard(request)}
        return super().index(request, context)

    def dashboard_live(self, request: HttpRequest) -> TemplateResponse:
        """The dashboard's live fragment (htmx polls it while something is moving)."""
        if not request.user.is_staff:
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/jobtrail_dashboard.html",
            {**self._dashboard(request), "live_fragment": True},
        )

    def get_urls(self) -> list[Any]:
        return [
            path("dashboard/live/", self.admin_view(self.dashboard_live), name="dashboard_live"),
            *super().get_urls(),
        ]


class JobtrailAdminConfig(AdminConfig):
    default_site = "config.admin.JobtrailAdminSite"
