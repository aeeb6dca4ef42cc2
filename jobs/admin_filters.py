"""Admin list filters that never scan the table to build their choices."""

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR
from django.contrib.admin.widgets import AutocompleteSelect
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .models import FailureReason, Job, JobStatus


def kept_params(changelist: Any, *, exclude: set[str | None]) -> dict[str, list[str]]:
    """What a filter's form submits beside its own value: the list's other filters, its search
    and its sort (Django's filter params leave the last two out: a filter typed after a search
    listed every row)."""
    params = {k: v for k, v in changelist.get_filters_params().items() if k not in exclude}
    for name in (SEARCH_VAR, ORDER_VAR):
        if changelist.params.get(name):
            params[name] = [changelist.params[name]]
    return params


class InputFilter(admin.SimpleListFilter):
    """A free-text filter (instead of SELECT DISTINCT over millions of rows)."""

    template = "admin/jobtrail_input_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]  # the filter shows only when it has lookups

    def choices(self, changelist: Any) -> Any:
        params = kept_params(changelist, exclude={self.parameter_name})
        yield {"params": params, "value": self.value() or "", "parameter": self.parameter_name}


def exact_filter(field: str, title: str) -> type[InputFilter]:
    """A free-text filter on ``field`` (exact match)."""

    def queryset(self: InputFilter, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        return queryset.filter(**{field: value}) if value else queryset

    return type(
        f"{field.title().replace('_', '')}Filter",
        (InputFilter,),
        {"title": title, "parameter_name": field, "queryset": queryset},
    )


TypeFilter = exact_filter("type", "type")


class FailureReasonFilter(admin.SimpleListFilter):
    """Failure reasons as the API's codes (``accounting_system_rate_limit``), the label as tooltip.

    Same parameter as the field's own filter, so links to ``?failure_reason__exact=…`` keep
    working; the choices are the fixed list, never a query.
    """

    title = "failure reason"
    parameter_name = "failure_reason__exact"
    template = "admin/jobtrail_code_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(reason.value, reason.value) for reason in FailureReason]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        if value not in FailureReason.values:
            raise admin.options.IncorrectLookupParameters(f"Not a failure reason: {value}")
        # status=failed is implied (job_failure_reason_iff_failed); job_reason_created (every
        # job: the sort by failure reason needs them all) serves the filter either way
        return queryset.filter(status=JobStatus.FAILED, failure_reason=value)

    def choices(self, changelist: Any) -> Any:
        labels = dict(FailureReason.choices)
        for choice in super().choices(changelist):
            # "All" has no code; each reason's label is its tooltip
            yield {**choice, "title": labels.get(str(choice["display"]), "")}


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1", "Stuck in processing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.value() == "1":
            from django.conf import settings

            cutoff = timezone.now() - timedelta(seconds=settings.JOBTRAIL_STUCK_AFTER)
            return queryset.filter(status=JobStatus.PROCESSING, last_activity_at__lt=cutoff)
        return queryset


class CompanyFilter(admin.SimpleListFilter):
    """Pick the company with the admin's autocomplete (no list of every company).

    For any model with a ``company`` foreign key (jobs, deliveries)."""

    title = "company"
    parameter_name = "company__id__exact"
    template = "admin/jobtrail_autocomplete_filter.html"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("", "")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        try:
            return queryset.filter(company_id=uuid.UUID(value))
        except ValueError:
            raise admin.options.IncorrectLookupParameters(f"Not a company id: {value}") from None

    def choices(self, changelist: Any) -> Any:
        from .models import Company

        widget = forms.ModelChoiceField(
            queryset=Company.objects.all(),
            required=False,
            widget=AutocompleteSelect(
                changelist.model._meta.get_field("company"), changelist.model_admin.admin_site
            ),
        ).widget
        params = kept_params(changelist, exclude={self.parameter_name})
        yield {
            "params": params,
            "parameter": self.parameter_name,
            "widget": widget.render(
                self.parameter_name, self.value() or "", attrs={"id": "company-filter"}
            ),
            "media": widget.media,
        }


def in_utc_range(moment: datetime) -> bool:
    """Whether an aware datetime is representable in UTC (the database stores UTC): year 1
    at +01:00 or year 9999 at -01:00 is not, and overflows when a query is built."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


class DateRangeFilter(admin.ListFilter):
    """Between two dates/times on ``field`` (``<prefix>_from`` inclusive, ``<prefix>_to``
    exclusive). A date is its midnight, a time without an offset is read in the current time
    zone (the staff user's: ``config.middleware.StaffTimeZoneMiddleware``)."""

    title = "created"
    field = "created_at"
    prefix = "created"
    template = "admin/jobtrail_range_filter.html"

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        super().__init__(request, params, model, model_admin)
        self.values: dict[str, str] = {}
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.values[name] = value[-1] if isinstance(value, list) else value
                self.used_parameters[name] = self.values[name]

    @property
    def parameters(self) -> tuple[str, str]:
        return (f"{self.prefix}_from", f"{self.prefix}_to")

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    @staticmethod
    def _parse(value: str) -> Any:
        moment = parse_datetime(value)
        day = None if moment else parse_date(value)
        if day is not None:
            moment = datetime.combine(day, time.min)
        if moment is None:
            raise admin.options.IncorrectLookupParameters(f"Not a date: {value}")
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        if not in_utc_range(moment):
            raise admin.options.IncorrectLookupParameters(f"Out of range: {value}")
        return moment

    def bounds(self) -> dict[str, Any]:
        """The lookups of the window on ``field`` (``field__gte``, ``field__lt``)."""
        start, end = self.parameters
        lookups = {}
        try:
            if self.values.get(start):
                lookups[f"{self.field}__gte"] = self._parse(self.values[start])
            if self.values.get(end):
                lookups[f"{self.field}__lt"] = self._parse(self.values[end])
        except ValueError as exc:
            raise admin.options.IncorrectLookupParameters(str(exc)) from exc
        return lookups

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        bounds = self.bounds()
        return queryset.filter(**bounds) if bounds else queryset

    def choices(self, changelist: Any) -> Any:
        params = kept_params(changelist, exclude=set(self.parameters))
        start, end = self.parameters
        yield {
            "params": params,
            "start": start,
            "end": end,
            "start_value": self.values.get(start, ""),
            "end_value": self.values.get(end, ""),
        }


class CreatedRangeFilter(DateRangeFilter):
    """Created between two dates/times (``created_from`` inclusive, ``created_to`` exclusive)."""


class CancelForm(forms.Form):
    message = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional: recorded on the job and its timeline.",
    )
