"""Staff views of endpoints (secrets never shown), deliveries and their attempts."""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from . import services
from .events import patterns_problem
from .models import EndpointRole, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .ssrf import UnsafeTarget, check_url


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
            others = WebhookEndpoint.objects.filter(
                company_id=self.instance.company_id, role=EndpointRole.INTEGRATION
            ).exclude(pk=self.instance.pk)
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
        help_text="Redeliver every failed delivery created at or after this time (UTC).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = [
        "url",
        "company",
        "role",
        "events",
        "is_active",
        "disabled_reason",
        "created_at",
    ]
    list_filter = ["is_active", "role"]
    list_select_related = ["company"]
    search_fields = ["url", "=id"]
    readonly_fields = ["company", "disabled_reason", "created_at", "updated_at"]
    actions = ["redeliver_failed_since"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # clients register endpoints through the API, which shows them the secret

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
            total = sum(
                services.endpoint_redeliver_failed(endpoint=endpoint, since=since)
                for endpoint in queryset
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


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "trigger",
        "started_at",
        "duration_ms",
        "status_code",
        "error",
        "response_body",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "events_id",
        "object_id",
        "endpoint",
        "handoff",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "events_id", "handoff"]
    list_select_related = ["endpoint"]
    search_fields = ["=object_id", "=event_id", "=id"]
    show_full_result_count = False
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<uuid:delivery_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="webhooks_webhookdelivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def redeliver_view(self, request: HttpRequest, delivery_id: Any) -> HttpResponse:
        """The "Redeliver" button of the job page: POST only, change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(WebhookDelivery, pk=delivery_id)
        try:
            services.delivery_redeliver(delivery=delivery)
            self.message_user(
                request, f"Delivery {delivery.events_id} queued for redelivery.", messages.SUCCESS
            )
        except services.DeliveryInProgress as exc:
            self.message_user(request, str(exc), messages.WARNING)
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
        return HttpResponseRedirect(target)

    @admin.action(description="Redeliver the selected deliveries", permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = skipped = 0
        for delivery in queryset:
            try:
                services.delivery_redeliver(delivery=delivery)
                count += 1
            except services.DeliveryInProgress:
                skipped += 1
        if skipped:
            self.message_user(
                request,
                f"{skipped} still pending (retried on schedule) were skipped.",
                messages.WARNING,
            )
        noun = "delivery" if count == 1 else "deliveries"
        self.message_user(request, f"{count} {noun} queued for redelivery.", messages.SUCCESS)
