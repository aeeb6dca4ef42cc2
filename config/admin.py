"""The staff console: the admin site with a dashboard, and a paginator for huge tables."""

import json
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString


def zone_label(moment: datetime) -> str:
    """The zone of an aware local time as shown: ``UTC``, ``CET (UTC+01:00)``, ``UTC+05:30``.

    Zones without a letter abbreviation (tzdata writes ``+0530`` or ``-03``) show the offset
    alone; every other zone shows its abbreviation and the offset beside it.
    """
    abbreviation = moment.strftime("%Z")
    offset = moment.utcoffset()
    if offset is None:
        return abbreviation
    if abbreviation == "UTC":
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    numeric = f"UTC{sign}{hours:02d}:{rest:02d}"
    if not abbreviation or abbreviation[0] in "+-" or abbreviation.isdigit():
        return numeric
    return f"{abbreviation} ({numeric})"


def exact_time(value: datetime | None, *, relative: str = "beside") -> SafeString | str:
    """A timestamp to the second with its timezone, and how long ago it is.

    Shown in the current time zone (the staff user's choice, activated by
    ``config.middleware.StaffTimeZoneMiddleware``; UTC by default) with its abbreviation and
    offset: ``2026-11-23 07:32:05 UTC``, ``2026-11-23 08:32:05 CET (UTC+01:00)``, in a
    ``<time>`` element (ISO with the offset in ``datetime``); the time from now as of the
    page's rendering ("3 minutes ago", "10 hours from now") beside it (``relative="beside"``)
    or as its tooltip (``"title"``: list columns stay narrow).
    """
    if value is None:
        return "—"
    from django.contrib.humanize.templatetags.humanize import naturaltime

    try:
        local = timezone.localtime(value)
    except OverflowError:  # year 9999 east of UTC, year 1 west of it: shown in UTC
        local = value.astimezone(UTC)
    text = f"{local:%Y-%m-%d %H:%M:%S} {zone_label(local)}"
    ago = naturaltime(value)
    if relative == "title":
        return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), ago, text)
    return format_html(
        '<time datetime="{}">{}</time> <span class="jt-ago">({})</span>',
        local.isoformat(),
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
            explained = queryset.order_by().explain(format="json")
            # "" for a query empty by construction (``job_id__in=[]``): Django runs none
            if explained:
                estimate = int(json.loads(explained)[0]["Plan"]["Plan Rows"])
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
        from webhooks.selectors import may_view_webhook_deliveries

        context: dict[str, Any] = {"ops": operations_panel()}
        if request.user.has_perm("jobs.view_job"):
            context["dashboard"] = dashboard_context(
                request.GET.get("window"),
                deliveries=may_view_webhook_deliveries(request.user),
            )
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
            path("time-zone/", self.admin_view(self.time_zone_view), name="time_zone"),
            *super().get_urls(),
        ]

    def time_zone_view(self, request: HttpRequest) -> HttpResponse:
        """The staff user's own display time zone (the "Time zone" link of the user tools)."""
        from ops.preferences import staff_time_zone, staff_time_zone_set

        current = staff_time_zone(user_id=request.user.pk)
        if request.method == "POST":
            form = TimeZoneForm(request.POST)
            if form.is_valid():
                name = staff_time_zone_set(
                    user_id=request.user.pk, name=form.cleaned_data["time_zone"]
                )
                messages.success(request, f"Times are now shown in {name}.")
                return HttpResponseRedirect(reverse("admin:time_zone"))
            status = 400
        else:
            form = TimeZoneForm(initial={"time_zone": current})
            status = 200
        context = {
            **self.each_context(request),
            "title": "Your time zone",
            "form": form,
            "current": current,
            "now": exact_time(timezone.now()),
        }
        return TemplateResponse(request, "admin/jobtrail_time_zone.html", context, status=status)


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        help_text="Every time in the console is shown in this zone, with its abbreviation "
        "and UTC offset. Dates typed into filters are read in it too.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from ops.preferences import time_zone_names

        super().__init__(*args, **kwargs)
        field = self.fields["time_zone"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(name, name) for name in time_zone_names()]


class JobtrailAdminConfig(AdminConfig):
    default_site = "config.admin.JobtrailAdminSite"
