"""Row locking of delivery claims on PostgreSQL (SKIP LOCKED)."""

import threading

import pytest
from django.db import connection, transaction

from tests.factories import CompanyFactory, JobFactory
from tests.webhooks.helpers import deliveries
from webhooks import services
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _claim_in_thread(delivery_id: object) -> object:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(services.delivery_claim(delivery_id=delivery_id))
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return result[0]


def test_claims_of_one_endpoints_deliveries_do_not_block_each_other() -> None:
    company = CompanyFactory()
    services.endpoint_create(company=company, url="http://127.0.0.1:9/", events=["*"])
    JobFactory(company=company)
    JobFactory(company=company)
    first, second = deliveries()
    assert first.endpoint_id == second.endpoint_id
    with transaction.atomic():  # a worker's claim whose locks are still held
        mine = services.delivery_claim(delivery_id=first.pk)
        other = _claim_in_thread(second.pk)  # another worker, same endpoint
        same = _claim_in_thread(first.pk)
    assert mine is not None
    assert other is not None
    assert same is None  # a locked row is skipped, not waited for
    assert WebhookDelivery.objects.get(pk=second.pk).attempts == 1
