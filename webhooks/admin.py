"""Staff views of endpoints (secrets never shown), deliveries and their attempts."""

import contextlib
import uuid
from datetime import timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from config.admin import EstimatedCountPaginator, exact_time_field
from config.admin_display import breakable, clipped, pretty_json
from jobs import search
from jobs.admin_filters import CompanyFilter, CreatedRangeFilter, DateRangeFilter, in_utc_range
from jobs.errors import InvalidEndpoint, JobError
from jobs.models import Job

from . import services
from .events import EVENT_TYPES, patterns_problem
from .models import (
    DeliveryStatus,
    EndpointQuerySet,
    EndpointRole,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from .selectors import endpoint_origin
from .ssrf import UnsafeTarget, check_url


class _SaveRefused(Exception):
    """The endpoint service refused a change the page's form had accepted."""


class EndpointForm(forms.ModelForm):
    # checked by check_url alone: the same rule as the API
    url = forms.CharField(max_length=2000, widget=forms.URLInput)

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "role", "events", "description", "is_active"]
        help_texts = {
            "role": "integration: the company's one endpoint that receives every new job's "
            "jobs.create (the hand-off); a hand-off that fails for good fails its pending job.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # each field carries the value the page showed (a hidden input): ``changed_data`` then
        # names what staff changed on the page, not what differs from the row as it is at the
        # save, so a change committed meanwhile (a 410 disable, the API's events) stays
        for field in self.fields.values():
            field.show_hidden_initial = True

    def clean_events(self) -> list[str]:
        events = self.cleaned_data["events"]
        if events is None:
            events = []
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise forms.ValidationError('A list of event ids or patterns, e.g. ["jobs.*"].')
        problem = patterns_problem(events)
        if problem:
            raise forms.ValidationError(problem)
        return events

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        events, role = data.get("events"), data.get("role")
        if events == [] and role != EndpointRole.INTEGRATION:
            self.add_error(
                "events",
                "Subscribe to at least one event id or pattern (only an integration endpoint "
                "may leave it empty: it always receives jobs.create).",
            )
        # the form has no company field, so Django skips the one-per-company constraint
        if role == EndpointRole.INTEGRATION and self.instance.company_id:
            others = (
                WebhookEndpoint.objects.live()
                .filter(company_id=self.instance.company_id, role=EndpointRole.INTEGRATION)
                .exclude(pk=self.instance.pk)
            )
            if others.exists():
                self.add_error("role", "This company already has an integration endpoint.")
        return data

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            check_url(url)
        except UnsafeTarget as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url


class RedeliverFailedForm(forms.Form):
    since = forms.DateTimeField(
        help_text="Redeliver every failed delivery created at or after this time (in your "
        "time zone: the Time zone link at the top).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def clean_since(self) -> Any:
        since = self.cleaned_data["since"]
        if since is not None and not in_utc_range(since):
            raise forms.ValidationError("This time is out of range.")
        return since


SECRET_FIELDS = frozenset({"secret", "previous_secret"})


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = [
        "url_col",
        "company",
        "role",
        "events_col",
        "is_active",
        "disabled_col",
        "created_col",
    ]
    list_display_links = ["url_col"]
    created_col = exact_time_field("created_at", "created", relative="title")
    list_filter = ["is_active", "role"]
    list_select_related = ["company"]
    search_fields = ["url", "=id"]
    readonly_fields = ["company", "disabled_reason", "created", "updated"]
    created = exact_time_field("created_at", "created")
    updated = exact_time_field("updated_at", "updated")
    actions = ["send_test_event", "redeliver_failed_since"]

    @admin.display(description="url", ordering="url")
    def url_col(self, endpoint: WebhookEndpoint) -> str:
        return clipped(endpoint.url, css="jt-url")

    @admin.display(description="events")
    def events_col(self, endpoint: WebhookEndpoint) -> str:
        return clipped(", ".join(endpoint.events or []) or "(jobs.create only)", css="jt-clip")

    @admin.display(description="disabled reason", ordering="disabled_reason")
    def disabled_col(self, endpoint: WebhookEndpoint) -> str:
        return clipped(endpoint.disabled_reason, css="jt-clip")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # The changelist filters on any field in its query string: ?secret__startswith=whsec_a
        # would list the endpoint only for the right prefix, one character at a time.
        if lookup.split(LOOKUP_SEP, 1)[0] in SECRET_FIELDS:
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        # one its company deleted is gone (the worker deletes its deliveries, then its row)
        return cast(EndpointQuerySet, super().get_queryset(request)).live()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # clients register endpoints through the API, which shows them the secret

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting one would delete its deliveries and attempts: pause it instead

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: forms.ModelForm, change: bool
    ) -> None:
        """Write only what the form changed, through the service (the row locked and read
        again): Django's save wrote every column as the page read it, so a secret rotated or a
        410 disable committed meanwhile (the URL check's name lookup alone takes up to 3 s) was
        undone. Resuming a paused endpoint here clears its disable reason and sends what it
        held, as the API does."""
        changed = {name: form.cleaned_data[name] for name in form.changed_data}
        if not change or not changed:
            return
        try:
            services.endpoint_update(endpoint=obj, **changed)
        except JobError as exc:  # the row changed after the form checked it (see change_view)
            raise _SaveRefused(str(exc)) from exc

    def _send_test(self, request: HttpRequest, endpoint: WebhookEndpoint) -> bool:
        """Queue a test event to one endpoint and log it with the staff user; False if refused."""
        try:
            delivery = services.endpoint_send_test(endpoint=endpoint)
        except (InvalidEndpoint, services.EndpointNotFound) as exc:
            self.message_user(request, f"{endpoint.url}: {exc}", messages.WARNING)
            return False
        self.log_change(request, endpoint, f"Sent a test event ({delivery.event_id}).")
        return True

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_send_test": self.has_change_permission(request)}
        try:
            return super().change_view(request, object_id, form_url, context)
        except _SaveRefused as exc:
            # The form was checked against the row as the page read it; the service, which
            # locks the row and reads it again, refused the change (the API made the endpoint
            # a subscriber while staff emptied its events, say). Nothing was written (the
            # admin's transaction rolled back, its history entry too): the page again, as the
            # endpoint is now, with the reason.
            self.message_user(
                request,
                f"Not saved: {exc} The endpoint changed while its page was open; "
                "here it is as it is now.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:endpoint_id>/send-test/",
                self.admin_site.admin_view(self.send_test_view),
                name="webhooks_webhookendpoint_send_test",
            ),
            *super().get_urls(),
        ]

    def send_test_view(self, request: HttpRequest, endpoint_id: Any) -> HttpResponse:
        """The endpoint page's "Send a test event" button: POST only, endpoint change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        if self._send_test(request, endpoint):
            self.message_user(request, self._test_sent_text(1), messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
        )

    @staticmethod
    def _test_sent_text(sent: int) -> str:
        url = reverse("admin:webhooks_webhookdelivery_changelist")
        return format_html(
            '{} test event{} queued: <a href="{}?events_id={}">see the deliveries</a>.',
            sent,
            "" if sent == 1 else "s",
            url,
            services.TEST_EVENT,
        )

    @admin.action(description="Send a test event to the selected endpoints", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        sent = sum(self._send_test(request, endpoint) for endpoint in queryset)
        if sent:
            self.message_user(request, self._test_sent_text(sent), messages.SUCCESS)

    @admin.action(
        description="Redeliver everything that failed for the selected endpoints since …",
        permissions=["change"],
    )
    def redeliver_failed_since(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse | None:
        form = RedeliverFailedForm(
            request.POST if "since" in request.POST else None,
            initial={"since": timezone.now() - timedelta(days=1)},
        )
        if form.is_valid():
            since = form.cleaned_data["since"]
            total = 0
            paused = []
            for endpoint in queryset:
                try:
                    count = services.endpoint_redeliver_failed(endpoint=endpoint, since=since)
                except services.EndpointPaused:
                    paused.append(endpoint)
                    continue
                total += count
                self.log_change(
                    request,
                    endpoint,
                    # the year padded: %Y writes year 1 as "1"
                    f"Redeliver failed since {since.year:04d}{since:-%m-%d %H:%M:%S %Z}: "
                    f"{count} queued.",
                )
            if paused:
                self.message_user(
                    request,
                    "Not redelivered: "
                    + ", ".join(endpoint_origin(endpoint) for endpoint in paused)
                    + " paused; resume an endpoint to send what it holds.",
                    messages.WARNING,
                )
            self.message_user(
                request,
                f"{total} failed deliver{'y' if total == 1 else 'ies'} queued for redelivery.",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/webhooks/redeliver_failed.html",
            {
                **self.admin_site.each_context(request),
                "title": "Redeliver failed deliveries",
                "endpoints": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


def attempt_badge(attempt: WebhookAttempt) -> str:
    """An attempt's outcome as a coloured badge: 2xx delivered, another answer, or no answer."""
    code = attempt.status_code
    if code is not None and 200 <= code < 300:
        return format_html('<span class="jt-badge jt-attempt-ok">{} ok</span>', code)
    if code is not None:
        return format_html('<span class="jt-badge jt-attempt-fail">HTTP {}</span>', code)
    return format_html(
        '<span class="jt-badge jt-attempt-error" title="{}">no answer</span>', attempt.error
    )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "trigger",
        "started",
        "duration",
        "outcome",  # the status code or what failed, coloured
        "exchange",
        "error",
        "response_body",
    )
    readonly_fields = fields

    started = exact_time_field("started_at", "started")

    @admin.display(description="request and answer")
    def exchange(self, attempt: WebhookAttempt) -> str:
        """The URL posted to, the request headers (signature redacted) and the answer's."""
        if not attempt.url and not attempt.request_headers:
            return "—"  # attempts logged before URLs and headers were
        return format_html(
            '<details class="jt-exchange"><summary>POST {}</summary>'
            "<p>Request headers</p><pre>{}</pre><p>Response headers</p><pre>{}</pre></details>",
            clipped(attempt.url or "—", css="jt-url"),
            _header_lines(attempt.request_headers),
            _header_lines(attempt.response_headers) or "(no answer)",
        )

    @admin.display(description="duration")
    def duration(self, attempt: WebhookAttempt) -> str:
        return f"{attempt.duration_ms} ms"

    @admin.display(description="outcome")
    def outcome(self, attempt: WebhookAttempt) -> str:
        return attempt_badge(attempt)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _header_lines(headers: dict[str, Any]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


def _job_of(delivery: WebhookDelivery) -> Job | None:
    """The job a delivery reports (``object_id`` is the job's id for every jobs.* event)."""
    try:
        job_id = uuid.UUID(delivery.object_id)
    except ValueError:
        return None
    return Job.objects.filter(pk=job_id).only("pk", "code").first()


class EventFilter(admin.SimpleListFilter):
    """The catalogue's event ids (never a SELECT DISTINCT over every delivery)."""

    title = "event"
    parameter_name = "events_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in [*EVENT_TYPES, services.TEST_EVENT]]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> QuerySet[WebhookDelivery]:
        value = self.value()
        return queryset.filter(events_id=value) if value else queryset


class LastAttemptRangeFilter(DateRangeFilter):
    """Deliveries whose last attempt was in a window (``last_attempt_from``, ``_to``).

    Reads ``last_attempt_at`` (index ``webhook_delivery_last_attempt`` on PostgreSQL), or
    walks the list's order from the window's end when the planner finds that cheaper.
    """

    title = "last attempt"
    field = "last_attempt_at"
    prefix = "last_attempt"

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]
    ) -> QuerySet[WebhookDelivery]:
        bounds = self.bounds()
        if "last_attempt_at__lt" in bounds:
            # implied (a delivery is created before any attempt) and what keeps the list's
            # walk down webhook_delivery_created short: it starts where the window ends
            bounds["created_at__lt"] = bounds["last_attempt_at__lt"]
        return queryset.filter(**bounds) if bounds else queryset


SEND_NOW_TEXT = {
    "redelivered": "queued for redelivery (one manual attempt)",
    "due now": "was retrying: its next attempt is due now (schedule kept)",
}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Deliveries and their attempts are the audit trail: read-only, never deleted here.

    Staff with the delivery change permission may send any delivery again now (its page's
    Redeliver button, the list's action); each such action is logged with the staff user on the
    delivery and on its job (the admin history).
    """

    list_display = [
        "event_col",
        "job_col",
        "endpoint_col",
        "handoff",
        "status_badge",
        "attempts",
        "last_code_col",
        "next_attempt_col",
        "created_col",
    ]
    list_display_links = ["event_col"]
    list_filter = [
        "status",
        EventFilter,
        "handoff",
        CompanyFilter,
        CreatedRangeFilter,
        LastAttemptRangeFilter,
    ]
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT(*) every filter choice
    list_select_related = ["endpoint"]
    search_fields = ["=object_id", "=event_id", "=id"]
    search_help_text = "A delivery id, a job id or code (any case), or a webhook-id (msg_…)."
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    change_form_template = "admin/webhooks/webhookdelivery/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "job",
                    "events_id",
                    "event_id",
                    "endpoint",
                    "company",
                    "handoff",
                    "status",
                    "attempts",
                    "next_trigger",
                    "last_status_code",
                    "last_error",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "created",
                    "last_attempt",
                    "next_attempt",
                    "delivered",
                    "locked",
                    "updated",
                ]
            },
        ),
        ("Payload", {"fields": ["payload_pretty"]}),
    ]
    readonly_fields = [
        "job",
        "payload_pretty",
        "created",
        "last_attempt",
        "next_attempt",
        "delivered",
        "locked",
        "updated",
    ]

    created = exact_time_field("created_at", "created")
    created_col = exact_time_field("created_at", "created", relative="title")
    next_attempt_col = exact_time_field("next_attempt_at", "next attempt", relative="title")
    next_attempt = exact_time_field("next_attempt_at", "next attempt")
    last_attempt = exact_time_field("last_attempt_at", "last attempt")
    delivered = exact_time_field("delivered_at", "delivered")
    locked = exact_time_field("locked_until", "being sent until")
    updated = exact_time_field("updated_at", "updated")

    class Media:
        css = {"all": ["jobtrail/admin.css"]}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[WebhookDelivery], search_term: str
    ) -> tuple[QuerySet[WebhookDelivery], bool]:
        """Exact matches only, each through an index: id, job id, webhook-id, or job code.

        A job code (any case, ``job_code_upper_pattern``) finds the deliveries of the jobs with
        that code (one per company at most; ``webhook_delivery_object``).
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        job_ids = [str(pk) for pk in search.job_ids_by_code(term)]
        matches = Q(event_id=term) | Q(object_id__in=job_ids)
        # a UUID-shaped term is a delivery id or a job id, and may be a job's code too
        with contextlib.suppress(ValueError):
            value = uuid.UUID(term)
            matches |= Q(pk=value) | Q(object_id=str(value))
        return queryset.filter(matches), False

    @admin.display(description="status", ordering="status")
    def status_badge(self, delivery: WebhookDelivery) -> str:
        """Delivered, failed, pending (never tried yet) or retrying (pending after a failure)."""
        if delivery.status == DeliveryStatus.PENDING and delivery.attempts:
            return format_html(
                '<span class="jt-badge jt-retrying" title="pending: attempt {} is scheduled">'
                "retrying</span>",
                delivery.attempts + 1,
            )
        return format_html(
            '<span class="jt-badge jt-{}">{}</span>', delivery.status, delivery.status
        )

    @admin.display(description="event", ordering="events_id")
    def event_col(self, delivery: WebhookDelivery) -> str:
        return breakable(delivery.events_id)

    @admin.display(description="job", ordering="object_id")
    def job_col(self, delivery: WebhookDelivery) -> str:
        """The job's id (its page for jobs.* events), clipped; whole in the tooltip."""
        if delivery.events_id.startswith("jobs."):
            url = reverse("admin:jobs_job_change", args=[delivery.object_id])
            return clipped(delivery.object_id, url=url)
        return clipped(delivery.object_id)

    @admin.display(description="endpoint", ordering="endpoint")
    def endpoint_col(self, delivery: WebhookDelivery) -> str:
        return clipped(delivery.endpoint.url, css="jt-url")

    @admin.display(description="last code", ordering="last_status_code")
    def last_code_col(self, delivery: WebhookDelivery) -> str:
        code = delivery.last_status_code
        return "—" if code is None else str(code)

    @admin.display(description="payload")
    def payload_pretty(self, delivery: WebhookDelivery) -> str:
        """The JSON body sent, indented, in a collapsible block (open by default)."""
        return pretty_json(delivery.payload)

    @admin.display(description="job")
    def job(self, delivery: WebhookDelivery) -> str:
        job = _job_of(delivery)
        if job is None:
            return delivery.object_id
        url = reverse("admin:jobs_job_change", args=[job.pk])
        return format_html('<a href="{}" id="delivery-job">{}</a>', url, job.code)

    # --- permissions: read-only, never deleted; redelivery is its own permission ------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("webhooks.change_webhookdelivery"))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_redeliver": self.has_redeliver_permission(request)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:delivery_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="webhooks_webhookdelivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def _send_now(self, request: HttpRequest, delivery: WebhookDelivery) -> str:
        """Send one delivery now and log it with the staff user (delivery and job history)."""
        done = services.delivery_send_now(delivery=delivery)
        target = endpoint_origin(delivery.endpoint)  # the job's history shows it too
        text = f"Redeliver: {delivery.events_id} to {target} {SEND_NOW_TEXT[done]}."
        self.log_change(request, delivery, text)
        job = _job_of(delivery)
        if job is not None:
            assert request.user.pk is not None  # the admin's views need a signed-in user
            LogEntry.objects.log_actions(
                request.user.pk, [job], CHANGE, change_message=text, single_object=True
            )
        return done

    def redeliver_view(self, request: HttpRequest, delivery_id: Any) -> HttpResponse:
        """The Redeliver button (delivery and job pages): POST only, change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(
            WebhookDelivery.objects.select_related("endpoint"), pk=delivery_id
        )
        try:
            done = self._send_now(request, delivery)
            self.message_user(
                request, f"Delivery {delivery.events_id} {SEND_NOW_TEXT[done]}.", messages.SUCCESS
            )
        except services.DeliveryInProgress as exc:
            self.message_user(request, str(exc), messages.WARNING)
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
        return HttpResponseRedirect(target)

    @admin.action(description="Redeliver the selected deliveries", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        counts = {"redelivered": 0, "due now": 0}
        busy = paused = 0
        for delivery in queryset.select_related("endpoint"):
            try:
                counts[self._send_now(request, delivery)] += 1
            except services.EndpointPaused:
                paused += 1
            except services.DeliveryInProgress:
                busy += 1
        count = counts["redelivered"]
        noun = "delivery" if count == 1 else "deliveries"
        text = f"{count} {noun} queued for redelivery."
        if counts["due now"]:
            text += f" {counts['due now']} retrying made due now (schedule kept)."
        if count or counts["due now"]:
            self.message_user(request, text, messages.SUCCESS)
        if busy:
            self.message_user(
                request, f"{busy} being sent right now were left to that attempt.", messages.WARNING
            )
        if paused:
            self.message_user(
                request,
                f"{paused} not sent: their endpoint is paused; resume it to send what it holds.",
                messages.WARNING,
            )
