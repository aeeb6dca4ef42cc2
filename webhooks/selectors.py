from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db.models import QuerySet
from django.http import Http404

from jobs.models import Company

from .models import (
    MANUAL_TAKEN,
    AttemptTrigger,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)


def endpoint_list(*, company: Company) -> QuerySet[WebhookEndpoint]:
    """The company's endpoints; a deleted one is gone at once (its rows follow in the worker)."""
    return WebhookEndpoint.objects.live().filter(company=company)


def endpoint_get(*, company: Company, endpoint_id: Any) -> WebhookEndpoint:
    try:
        return endpoint_list(company=company).get(pk=endpoint_id)
    except (WebhookEndpoint.DoesNotExist, ValueError) as exc:
        raise Http404("No such webhook endpoint.") from exc


def delivery_list(
    *,
    company: Company,
    endpoint: Any = None,
    status: str | None = None,
    events_id: str | None = None,
    object_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[WebhookDelivery]:
    # a deleted endpoint's deliveries are gone with it (the worker deletes their rows after)
    deliveries = WebhookDelivery.objects.filter(company=company, endpoint__deleted_at__isnull=True)
    if endpoint:
        deliveries = deliveries.filter(endpoint_id=endpoint)
    if status:
        deliveries = deliveries.filter(status=status)
    if events_id:
        deliveries = deliveries.filter(events_id=events_id)
    if object_id:
        deliveries = deliveries.filter(object_id=object_id)
    if created_after:
        deliveries = deliveries.filter(created_at__gte=created_after)
    if created_before:
        deliveries = deliveries.filter(created_at__lt=created_before)
    return deliveries


def delivery_get(*, company: Company, delivery_id: Any) -> WebhookDelivery:
    try:
        return (
            WebhookDelivery.objects.filter(company=company, endpoint__deleted_at__isnull=True)
            .prefetch_related("attempt_log")
            .get(pk=delivery_id)
        )
    except (WebhookDelivery.DoesNotExist, ValueError) as exc:
        raise Http404("No such webhook delivery.") from exc


def job_handoff(*, job_id: Any) -> WebhookDelivery | None:
    """The job's hand-off to its company's integration endpoint, if it had one."""
    return (
        WebhookDelivery.objects.filter(object_id=str(job_id), handoff=True)
        .select_related("endpoint")
        .order_by("created_at")
        .first()
    )


def handoff_state(delivery: WebhookDelivery) -> str:
    """``delivered`` or ``failed``; while pending ``re-sending`` (staff re-sent it),
    ``retrying`` (an attempt failed, the next is due at ``next_attempt_at``) or ``sending``."""
    if delivery.status != DeliveryStatus.PENDING:
        return str(delivery.status)
    if delivery.next_trigger in (AttemptTrigger.MANUAL, MANUAL_TAKEN):
        return "re-sending"
    if delivery.last_status_code is not None or delivery.last_error:
        return "retrying"
    return "sending"


def endpoint_origin(endpoint: WebhookEndpoint) -> str:
    """The endpoint as a job's admin history names it: its id and origin, never the path,
    query or user info (a client's credential can sit there; staff who may view jobs but not
    webhooks read job histories)."""
    parts = urlsplit(endpoint.url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"endpoint #{endpoint.pk} ({parts.scheme}://{host}{port})"


def may_view_webhook_deliveries(user: Any) -> bool:
    """Whether the staff user may see webhook deliveries (and so the endpoint URLs they name):
    the view permission or the change one, which includes it (as Django's admin reads it)."""
    return bool(
        user.has_perm("webhooks.view_webhookdelivery")
        or user.has_perm("webhooks.change_webhookdelivery")
    )
