"""The staff console: the admin site with a dashboard, and a paginator for huge tables."""

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.functional import cached_property


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

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        from jobs.dashboard import dashboard_context

        context = {**(extra_context or {})}
        if request.user.has_perm("jobs.view_job"):
            context["dashboard"] = dashboard_context()
        return super().index(request, context)


class JobtrailAdminConfig(AdminConfig):
    default_site = "config.admin.JobtrailAdminSite"
