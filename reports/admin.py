import contextlib
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from config.admin import EstimatedCountPaginator, exact_time_field
from jobs import search

from .models import Report
from .services import report_state


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["job", "status", "row_count", "size_bytes", "ready", "download"]
    list_filter = ["status"]
    list_select_related = ["job"]
    search_fields = ["=job__code", "=job__id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator  # no COUNT(*) of a million reports per page
    ready = exact_time_field("ready_at", "ready", relative="title")
    created = exact_time_field("created_at", "created")
    updated = exact_time_field("updated_at", "updated")
    ready_exact = exact_time_field("ready_at", "ready")
    lease = exact_time_field("locked_until", "build lease until")
    _TIMES = {"created_at": "created", "updated_at": "updated", "ready_at": "ready_exact"}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Report], search_term: str
    ) -> tuple[QuerySet[Report], bool]:
        """A job's code (any case, ``job_code_upper_pattern``) or a job's id, exactly: the
        admin's own ``=job__code``/``=job__id`` search compares ``UPPER(job_id::text)``, which
        no index serves (a scan of every report joined to its job)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        job_ids = search.job_ids_by_code(term)
        with contextlib.suppress(ValueError):
            job_ids.append(uuid.UUID(term))
        return queryset.filter(job_id__in=job_ids), False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Every column, timestamps shown exact (seconds, zone, relative), and the link."""
        shown = [
            self._TIMES.get(f.name, "lease" if f.name == "locked_until" else f.name)
            for f in self.model._meta.fields
        ]
        return [*shown, "download"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    # Read-only: a report is rebuilt from its job (the job page's action), never edited or
    # deleted here (no Save buttons, no "Delete selected"); retention purges are the only
    # deletion.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Download")
    def download(self, report: Report) -> str:
        url = report_state(report, job=report.job)["url"]  # none while it misses results
        return format_html('<a href="{}">CSV</a>', url) if url else "—"
