"""The staff console for jobs: list, read-only job page with its timeline, cancel, reports."""

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.widgets import AutocompleteSelect
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from config.admin import EstimatedCountPaginator, exact_time, exact_time_field
from config.admin_display import breakable, clipped, pretty_json
from reports.models import ReportStatus
from reports.services import job_report, report_rebuild, report_state
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.selectors import (
    endpoint_origin,
    handoff_state,
    job_handoff,
    may_view_webhook_deliveries,
)
from webhooks.services import handoff_resend

from . import audit, search, services
from .admin_filters import (
    CancelForm,
    CompanyFilter,
    CreatedRangeFilter,
    FailureReasonFilter,
    StuckFilter,
    TypeFilter,
    exact_filter,
)
from .errors import DeliveryInProgress, ReportNotPossible
from .models import (
    TERMINAL_STATUSES,
    Company,
    CompanyMember,
    EventSource,
    FailureReason,
    Job,
    JobStatus,
    PushResult,
    PushStatus,
    UnmatchedPush,
)
from .selectors import job_queryset_all

CANCEL_PREVIEW = 50
CANCEL_LOG_BATCH = 1000  # jobs per admin-log insert when a cancel covers many
COMPANY_MATCHES = 50  # companies a name search selects jobs from


class KnownLabelAutocomplete(AutocompleteSelect):
    """An autocomplete whose selected option is labelled from ``known`` when it is there.

    Django's autocomplete reads its selected object again to label it: one query per inline
    row. ``CompanyMembersFormSet`` gives it the labels of the users it read with the rows.
    """

    known: dict[str, str] = {}

    def optgroups(
        self, name: str, value: Sequence[str], attr: dict[str, Any] | None = None
    ) -> list[tuple[str | None, list[dict[str, Any]], int | None]]:
        selected = [str(v) for v in value if str(v) not in self.choices.field.empty_values]
        if not selected or any(v not in self.known for v in selected):
            return super().optgroups(name, value, attr)
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        for v in selected:
            options.append(self.create_option(name, v, self.known[v], True, len(options)))
        return [(None, options, 0)]


class CompanyMembersFormSet(BaseInlineFormSet):
    """A company's members labelled from the users read with them (``CompanyMemberInline``)."""

    @cached_property
    def forms(self) -> list[Any]:
        forms: list[Any] = super().forms
        labels = {str(m.user_id): str(m.user) for m in self.get_queryset()}
        for form in forms:
            widget = form.fields["user"].widget
            autocomplete = getattr(widget, "widget", widget)  # inside the "+" link's wrapper
            if isinstance(autocomplete, KnownLabelAutocomplete):
                autocomplete.known = labels
        return forms


class CompanyMemberInline(admin.TabularInline):
    model = CompanyMember
    formset = CompanyMembersFormSet
    extra = 0
    autocomplete_fields = ["user"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CompanyMember]:
        # each row shows as "user @ company": read them with it, not once per row
        return super().get_queryset(request).select_related("user", "company")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user":
            kwargs["widget"] = KnownLabelAutocomplete(db_field, self.admin_site)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "id_col", "created_col"]
    search_fields = ["name"]
    created_col = exact_time_field("created_at", "created", relative="title")

    @admin.display(description="id", ordering="id")
    def id_col(self, company: Company) -> str:
        return clipped(company.pk)

    inlines = [CompanyMemberInline]

    # A company's jobs and deliveries are the audit trail: the models refuse to delete a company
    # that has any (on_delete=PROTECT); the admin says so without collecting them (millions).
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and audit.companies_with_records(company_ids=[obj.pk]):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        companies = list(objs)
        kept = audit.companies_with_records(company_ids=[c.pk for c in companies])
        if kept:
            protected = [
                f"{company}: {audit.COMPANY_RECORDS_KEPT}"
                for company in companies
                if company.pk in kept
            ]
            return [], {}, set(), protected
        return super().get_deleted_objects(objs, request)


def reason_code(reason: str) -> str:
    """A failure reason as the API's code, its human text as the tooltip ("" shows as —)."""
    if not reason:
        return "—"
    label = dict(FailureReason.choices).get(reason, reason)
    # wraps after its underscores in a narrow column; copied, it is the exact code
    return format_html('<span class="jt-code" title="{}">{}</span>', label, breakable(reason))


def status_badge(status: str) -> str:
    return format_html('<span class="jt-badge jt-{}">{}</span>', status, status.replace("_", " "))


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "company_display",
        "type_col",
        "status_display",
        "reason",
        "records",
        "created",
        "last_activity",
    ]
    list_display_links = ["code"]
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT(*) every filter choice
    list_filter = [
        "status",
        FailureReasonFilter,
        TypeFilter,
        CompanyFilter,
        CreatedRangeFilter,
        StuckFilter,
    ]
    list_select_related = ["company"]
    search_fields = ["=code"]
    search_help_text = (
        "A job id, a code or the start of one, the start of a company name (any case), a push "
        "communication id or request id, or meta:key=value (metadata; meta:a.b=value nested)."
    )
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    actions = ["cancel_selected", "rebuild_reports"]
    change_form_template = "admin/jobs/job/change_form.html"
    fieldsets = [
        (
            None,
            {"fields": ["id", "code", "company", "type", "status", "reason", "message"]},
        ),
        ("Records", {"fields": ["total_records", "effected_records", "metadata_pretty"]}),
        (
            "Times",
            {
                "fields": [
                    "created_exact",
                    "started",
                    "ended",
                    "last_activity_exact",
                    "expires_after",
                    "expires",
                    "updated",
                ]
            },
        ),
    ]

    readonly_fields = [
        "reason",
        "metadata_pretty",
        "created_exact",
        "started",
        "ended",
        "last_activity_exact",
        "expires",
        "updated",
    ]
    created_exact = exact_time_field("created_at", "created at")
    started = exact_time_field("start_time", "start time")
    ended = exact_time_field("end_time", "end time")
    last_activity_exact = exact_time_field("last_activity_at", "last activity")
    expires = exact_time_field("expires_at", "expires at")
    updated = exact_time_field("updated_at", "updated")

    class Media:
        css = {"all": ["jobtrail/admin.css"]}

    # --- list ---------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """``meta:key=value``; else a job id, code, code or company prefix, or external id.

        Index-backed at millions of jobs: ``meta:`` through the GIN index on the metadata
        (``jobs.search``); ``code__istartswith`` is ``UPPER(code) LIKE 'ABC%'`` (index
        ``job_code_upper_pattern``, migration 0009); the companies whose name starts with the
        term (``company_name_upper_pattern``, at most ``COMPANY_MATCHES``) select their jobs
        by ``job_company_created``; a push communication id or request id selects the jobs
        of its push results (``jobs.search.job_ids_by_external_id``). Never a
        leading-wildcard LIKE on jobs.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        metadata = search.parse_metadata_term(term)
        if metadata is not None:
            return search.jobs_with_metadata(queryset, metadata), False
        external = search.job_ids_by_external_id(term)
        companies = list(
            Company.objects.filter(name__istartswith=term)
            .order_by()
            .values_list("pk", flat=True)[:COMPANY_MATCHES]
        )
        # a code may look like a UUID (the API takes one): a UUID-shaped term is a job id or
        # the start of a code
        matches = Q(code__istartswith=term)
        with contextlib.suppress(ValueError):
            matches |= Q(pk=uuid.UUID(term))
        if companies:
            matches |= Q(company_id__in=companies)
        if external:
            matches |= Q(pk__in=external)
        return queryset.filter(matches), False

    # Sorting by company groups each company's jobs (newest first) in company id order, through
    # job_company_created: an order by company name would join every job to its company and
    # sort them all, which no index on jobs can serve.
    @admin.display(description="company", ordering="company_id")
    def company_display(self, job: Job) -> str:
        return str(job.company)

    @admin.display(description="status", ordering="status")
    def status_display(self, job: Job) -> str:
        return status_badge(job.status)

    @admin.display(description="type", ordering="type")
    def type_col(self, job: Job) -> str:
        return breakable(job.type)

    # list columns: the exact time, the time from now as its tooltip (keeps the columns narrow)
    @admin.display(description="created", ordering="created_at")
    def created(self, job: Job) -> str:
        return exact_time(job.created_at, relative="title")

    @admin.display(description="last activity", ordering="last_activity_at")
    def last_activity(self, job: Job) -> str:
        return exact_time(job.last_activity_at, relative="title")

    @admin.display(description="failure reason", ordering="failure_reason")
    def reason(self, job: Job) -> str:
        return reason_code(job.failure_reason)

    @admin.display(description="metadata")
    def metadata_pretty(self, job: Job) -> str:
        """The job's metadata, indented, in a collapsible block."""
        return pretty_json(job.metadata)

    @admin.display(description="records")
    def records(self, job: Job) -> str:
        if job.total_records is None and not job.effected_records:
            return "—"
        total = "?" if job.total_records is None else job.total_records
        return f"{job.effected_records} / {total}"

    # --- permissions: every field read-only; changes only through actions ---------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("jobs.cancel_job"))

    def has_rebuild_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("reports.change_report"))

    # --- job page -----------------------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<uuid:job_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="jobs_job_cancel",
            ),
            path(
                "<uuid:job_id>/rebuild-report/",
                self.admin_site.admin_view(self.rebuild_report_view),
                name="jobs_job_rebuild_report",
            ),
            path(
                "<uuid:job_id>/live/",
                self.admin_site.admin_view(self.live_view),
                name="jobs_job_live",
            ),
            path(
                "<uuid:job_id>/resend-handoff/",
                self.admin_site.admin_view(self.resend_handoff_view),
                name="jobs_job_resend_handoff",
            ),
        ]
        return extra + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            job = (
                job_queryset_all().select_related("company").filter(pk=uuid.UUID(object_id)).first()
            )
        except ValueError:
            job = None  # the admin answers "doesn't exist" for a malformed id
        context = dict(extra_context or {})
        if job is not None:
            context.update(self._job_page_context(request, job))
        return super().change_view(request, object_id, form_url, context)

    def _job_page_context(self, request: HttpRequest, job: Job) -> dict[str, Any]:
        # the timeline: numbered events only (push results and report readiness are logged
        # unnumbered for the relay; the page shows them as push results and the report)
        events = list(
            job.events.filter(sequence__isnull=False).select_related("actor").order_by("sequence")
        )
        # the deliveries name endpoints (URLs, their companies): for staff who may view them
        # (not even read for others: whether any is pending is all the page needs of them)
        may_view_deliveries = may_view_webhook_deliveries(request.user)
        job_deliveries = WebhookDelivery.objects.filter(object_id=str(job.pk))
        if may_view_deliveries:
            deliveries = list(
                job_deliveries.select_related("endpoint").order_by("-created_at")[:20]
            )
            handoff = job_handoff(job_id=job.pk)
            pending = any(d.status == DeliveryStatus.PENDING for d in deliveries) or (
                handoff is not None and handoff.status == DeliveryStatus.PENDING
            )
        else:
            deliveries, handoff = [], None
            pending = job_deliveries.filter(status=DeliveryStatus.PENDING).exists()
        push_list = reverse("admin:jobs_pushresult_changelist")
        report = job_report(job)
        moving = {
            "the job is unfinished": not job.is_terminal,
            "deliveries are pending": pending,
            "its report is being built": report is not None
            and report_state(report, job=job)["status"] == ReportStatus.PENDING,
            "events wait for the relay": job.events.filter(relayed_at__isnull=True).exists(),
        }
        return {
            "job": job,
            "job_page_url": reverse("admin:jobs_job_change", args=[job.pk]),
            "job_live": any(moving.values()),
            "job_moving": ", ".join(text for text, yes in moving.items() if yes),
            "refresh_seconds": settings.JOBTRAIL_ADMIN_REFRESH_SECONDS,
            "rendered_at": timezone.now(),
            "job_status_badge": status_badge(job.status),
            "job_reason": reason_code(job.failure_reason),
            "events": events,
            "push_counts": {"success": job.push_success_count, "failed": job.push_failed_count},
            "push_results_url": f"{push_list}?job__id__exact={job.pk}",
            "push_failed_url": f"{push_list}?job__id__exact={job.pk}&status__exact=failed",
            "may_view_deliveries": may_view_deliveries,
            "deliveries": deliveries,
            "deliveries_url": reverse("admin:webhooks_webhookdelivery_changelist")
            + f"?object_id={job.pk}",
            "report": report,
            "report_state": report_state(report, job=job),
            "can_cancel": self.has_cancel_permission(request) and not job.is_terminal,
            "can_rebuild": self.has_rebuild_permission(request)
            and job.status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS),
            "can_redeliver": request.user.has_perm("webhooks.change_webhookdelivery"),
            "handoff": handoff,
            "handoff_state": handoff_state(handoff) if handoff else None,
        }

    def live_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        """The job page's live fragment: htmx polls it while the job or its deliveries move."""
        job = job_queryset_all().select_related("company").filter(pk=job_id).first()
        if job is None:
            raise Http404("No such job.")
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        context = {**self._job_page_context(request, job), "live_fragment": True}
        return TemplateResponse(request, "admin/jobs/job/live.html", context)

    def resend_handoff_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        """The "Re-send hand-off" button of the job page: POST, delivery change permission.

        Recorded in the job's history (the admin log) and as a manual attempt.
        """
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("webhooks.change_webhookdelivery"):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=job_id)
        handoff = job_handoff(job_id=job.pk)
        if handoff is None:
            self.message_user(request, f"{job.code} has no hand-off to re-send.", messages.ERROR)
        else:
            try:
                done = handoff_resend(delivery=handoff)
            except DeliveryInProgress as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                text = (
                    "Re-sent the hand-off (one manual attempt)"
                    if done == "redelivered"
                    else "Made the retrying hand-off due now"
                )
                self.log_change(request, job, f"{text} to {endpoint_origin(handoff.endpoint)}.")
                self.message_user(request, f"{text}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def rebuild_report_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        if not self.has_rebuild_permission(request):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=job_id)
        if request.method == "POST":
            try:
                report_rebuild(job=job)
            except ReportNotPossible as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.log_change(request, job, "Rebuild report: queued.")
                self.message_user(request, f"The report of {job.code} is being rebuilt.")
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    @admin.action(description="Rebuild the reports of the selected jobs", permissions=["rebuild"])
    def rebuild_reports(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        done = 0
        selected = queryset.count()
        for job in queryset.filter(
            status__in=[JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS]
        ):
            report_rebuild(job=job)
            self.log_change(request, job, "Rebuild report: queued (list action).")
            done += 1
        message = f"{done} report{'' if done == 1 else 's'} queued for rebuilding."
        if skipped := selected - done:
            message += f" {skipped} skipped: only a completed job has a report."
        self.message_user(request, message, messages.WARNING if skipped else messages.SUCCESS)

    # --- cancel -------------------------------------------------------------------------------

    def cancel_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        """The "Cancel job" button of the job page: confirm, then cancel."""
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        queryset = Job.objects.filter(pk=job_id)
        if not queryset.exists():
            raise Http404("No such job.")
        job_url = reverse("admin:jobs_job_change", args=[job_id])
        response = self._cancel_flow(request, queryset, done_url=job_url, form_action="")
        assert response is not None
        return response

    @admin.action(description="Cancel selected jobs …", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return self._cancel_flow(request, queryset, done_url=None, form_action=None)

    def _log_canceled(self, request: HttpRequest, job_ids: list[Any], message: str) -> None:
        """Record each job this request canceled in its history (the admin log): not a job
        another cancel finished first, though the same user sent both."""
        assert request.user.pk is not None  # the admin's views need a signed-in user
        text = f"Canceled: {message}" if message else "Canceled."
        for start in range(0, len(job_ids), CANCEL_LOG_BATCH):
            canceled = Job.objects.filter(pk__in=job_ids[start : start + CANCEL_LOG_BATCH])
            LogEntry.objects.log_actions(
                request.user.pk, canceled.only("pk", "code"), CHANGE, change_message=text
            )

    def _cancel_flow(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        *,
        done_url: str | None,
        form_action: str | None,
    ) -> HttpResponse | None:
        counts = queryset.aggregate(
            active=Count("pk", filter=~Q(status__in=TERMINAL_STATUSES)),
            finished=Count("pk", filter=Q(status__in=TERMINAL_STATUSES)),
        )
        confirmed = request.method == "POST" and request.POST.get("confirm") == "yes"
        form = CancelForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            active_ids = list(
                queryset.exclude(status__in=TERMINAL_STATUSES).values_list("pk", flat=True)
            )
            canceled_ids, skipped = services.jobs_cancel(
                job_ids=active_ids,
                actor=request.user,  # type: ignore[arg-type]
                source=EventSource.ADMIN,
                message=form.cleaned_data["message"],
            )
            self._log_canceled(request, canceled_ids, form.cleaned_data["message"])
            canceled = len(canceled_ids)
            skipped += counts["finished"]
            text = f"Canceled {canceled} job{'s' if canceled != 1 else ''}."
            if skipped:
                text += f" {skipped} already finished and skipped."
            self.message_user(request, text, messages.SUCCESS if canceled else messages.WARNING)
            return HttpResponseRedirect(done_url) if done_url else None
        preview = list(
            queryset.exclude(status__in=TERMINAL_STATUSES)
            .select_related("company")
            .order_by("-created_at")[:CANCEL_PREVIEW]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel jobs",
            "opts": self.model._meta,
            "form": form,
            "preview": preview,
            "active": counts["active"],
            "finished": counts["finished"],
            "more": max(0, counts["active"] - len(preview)),
            "is_action": done_url is None,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_index": request.POST.get("index", "0"),
            "cancel_url": done_url or request.get_full_path(),
            "form_action": form_action,
        }
        return TemplateResponse(request, "admin/jobs/job/cancel_confirmation.html", context)


@admin.register(PushResult)
class PushResultAdmin(admin.ModelAdmin):
    list_display = [
        "push_id_col",
        "job",
        "status_display",
        "code_col",
        "data_type",
        "service_name",
        "errors_display",
        "received_col",
    ]
    list_filter = [
        "status",
        exact_filter("data_type", "data type"),
        exact_filter("service_name", "service"),
    ]
    show_facets = admin.ShowFacets.NEVER
    list_select_related = ["job"]
    search_fields = ["=push_communication_id", "=request_id"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[PushResult], search_term: str
    ) -> tuple[QuerySet[PushResult], bool]:
        """A push communication id or request id, exactly, through their indexes
        (``jobs.search.push_results_by_external_id``): the admin's own ``=field`` search is
        ``UPPER(push_communication_id) = UPPER(…)``, which no index serves (a scan of every
        push result)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return search.push_results_by_external_id(queryset, term), False

    fields = [
        "job",
        "push_communication_id",
        "status",
        "response_code",
        "errors_display",
        "connection_id",
        "business_name",
        "service_name",
        "data_type",
        "source_object_ids",
        "requested",
        "completed",
        "service_account_ref",
        "request_id",
        "ignored_fields",
        "received",
    ]
    received_col = exact_time_field("received_at", "received", relative="title")
    requested = exact_time_field("requested_on", "requested on")
    completed = exact_time_field("completed_on", "completed on")
    received = exact_time_field("received_at", "received")

    class Media:
        css = {"all": ["jobtrail/admin.css"]}

    received_col = exact_time_field("received_at", "received", relative="title")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="push id", ordering="push_communication_id")
    def push_id_col(self, result: PushResult) -> str:
        return clipped(result.push_communication_id, css="jt-id jt-id-wide")

    @admin.display(description="code", ordering="response_code")
    def code_col(self, result: PushResult) -> str:
        return "—" if result.response_code is None else str(result.response_code)

    @admin.display(description="status", ordering="status")
    def status_display(self, result: PushResult) -> str:
        css = "completed" if result.status == PushStatus.SUCCESS else "failed"
        return format_html('<span class="jt-badge jt-{}">{}</span>', css, result.status)

    @admin.display(description="validation errors")
    def errors_display(self, result: PushResult) -> str:
        errors = [e for e in result.validation_errors or [] if isinstance(e, dict)]
        if not errors:
            return "—"
        return format_html(
            '<ul class="jt-errors">{}</ul>',
            format_html_join(
                "",
                "<li><strong>{}</strong>: {}</li>",
                ((e.get("field") or "—", e.get("message", "")) for e in errors),
            ),
        )


class WaitingFilter(admin.SimpleListFilter):
    title = "attached to a job"
    parameter_name = "attached"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "No: waiting for its job's registration"), ("yes", "Yes")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "no":
            return queryset.filter(attached_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(attached_at__isnull=False)
        return queryset


@admin.register(UnmatchedPush)
class UnmatchedPushAdmin(admin.ModelAdmin):
    """Push results that reached a company's ingest URL before their job registered them."""

    list_display = [
        "push_id_col",
        "company",
        "status_display",
        "request_col",
        "received_col",
        "job",
        "attached_col",
    ]
    received_col = exact_time_field("received_at", "received", relative="title")
    attached_col = exact_time_field("attached_at", "attached", relative="title")
    list_filter = [WaitingFilter, "status", CompanyFilter]
    list_select_related = ["company", "job"]
    search_fields = ["=push_communication_id", "=request_id"]
    search_help_text = "An exact pushCommunicationId or requestId."
    ordering = ["-received_at", "-id"]
    show_facets = admin.ShowFacets.NEVER
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    fields = [
        "company",
        "push_communication_id",
        "request_id",
        "status",
        "data_pretty",
        "received",
        "job",
        "attached",
    ]
    received = exact_time_field("received_at", "received")
    attached = exact_time_field("attached_at", "attached")

    class Media:
        css = {"all": ["jobtrail/admin.css"]}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # part of the audit trail: only retention purges delete

    @admin.display(description="data")
    def data_pretty(self, push: UnmatchedPush) -> str:
        """The pushed result as received, indented, in a collapsible block."""
        return pretty_json(push.data)

    @admin.display(description="push id", ordering="push_communication_id")
    def push_id_col(self, push: UnmatchedPush) -> str:
        return clipped(push.push_communication_id, css="jt-id jt-id-wide")

    @admin.display(description="request id", ordering="request_id")
    def request_col(self, push: UnmatchedPush) -> str:
        return clipped(push.request_id)

    @admin.display(description="status", ordering="status")
    def status_display(self, push: UnmatchedPush) -> str:
        css = "completed" if push.status == PushStatus.SUCCESS else "failed"
        return format_html('<span class="jt-badge jt-{}">{}</span>', css, push.status)


# --- staff users: the audit trail outlives them -----------------------------------------------

User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    """Django's user admin, except that a user whom admin log entries name is never deleted
    (``LogEntry.user`` cascades): no Delete button, the bulk action refuses with the advice to
    deactivate instead. ``jobs.audit`` refuses the same outside the admin."""

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [*fieldsets, ("Audit trail", {"fields": ["audit_trail"]})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_readonly_fields(request, obj), "audit_trail"]

    @admin.display(description="admin log entries")
    def audit_trail(self, user: Any) -> str:
        count = audit.log_entry_counts(user_ids=[user.pk]).get(user.pk, 0)
        if not count:
            return "None: the user can be deleted."
        return format_html(
            '<span id="audit-trail">{} admin log entries name this user, so it cannot be '
            "deleted: {}.</span>",
            count,
            audit.DEACTIVATE_ADVICE,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and audit.log_entry_counts(user_ids=[obj.pk]):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Users named by log entries are protected: the confirmation page lists them with
        the advice, and a confirmed bulk delete deletes nothing."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        users = list(objs)
        entries = audit.log_entry_counts(user_ids=[user.pk for user in users])
        kept = [
            f"{user}: {entries[user.pk]} admin log entries; {audit.DEACTIVATE_ADVICE}"
            for user in users
            if user.pk in entries
        ]
        if kept and super().has_delete_permission(request):
            # listed as "no permission" by has_delete_permission above: the reason is the
            # protection, which the page then names with its advice
            perms_needed = set(perms_needed) - {str(self.model._meta.verbose_name)}
        return deleted, counts, perms_needed, [*protected, *kept]
