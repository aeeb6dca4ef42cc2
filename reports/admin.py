from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from config.admin import exact_time_field

from .models import Report
from .services import report_state


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["job", "status", "row_count", "size_bytes", "ready", "download"]
    list_filter = ["status"]
    list_select_related = ["job"]
    search_fields = ["=job__code", "=job__id"]
    show_full_result_count = False
    ready = exact_time_field("ready_at", "ready", relative="title")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*(f.name for f in self.model._meta.fields), "download"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Download")
    def download(self, report: Report) -> str:
        url = report_state(report)["url"]
        return format_html('<a href="{}">CSV</a>', url) if url else "—"
