from typing import Any

from jobs.models import Company
from tests.relay import run_relay
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoint_for(company: Company, url: str, events: list[str] | None = None) -> WebhookEndpoint:
    return services.endpoint_create(company=company, url=url, events=events or ["*"])


def deliveries(**filters: Any) -> list[WebhookDelivery]:
    """The deliveries, once the relay has fanned out every job event logged so far."""
    run_relay()
    return list(WebhookDelivery.objects.filter(**filters).order_by("created_at", "events_id"))
