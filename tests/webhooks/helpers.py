from typing import Any

from jobs.models import Company
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoint_for(company: Company, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    return services.endpoint_create(company=company, url=url, events=events or ["*"])


def deliveries(**filters: Any) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(**filters).order_by("created_at", "events_id"))
