"""Row locking of delivery claims on PostgreSQL (SKIP LOCKED)."""

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from tests.factories import CompanyFactory, JobFactory
from tests.pg import backend_terminator
from tests.receiver import Receiver, Reply
from tests.webhooks.helpers import deliveries
from webhooks import sending, services
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery

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


def test_a_sender_round_whose_connection_dies_records_what_it_sent(receiver: Receiver) -> None:
    """PostgreSQL ends the round's connection (a restart, a failover) while it sends: the
    round reconnects and records every attempt once the database answers, instead of losing
    the outcomes (those deliveries would be sent again when their leases end) and ending."""
    company = CompanyFactory()
    services.endpoint_create(company=company, url=receiver.url + "/hook", events=["jobs.create"])
    for _ in range(6):
        JobFactory(company=company)
    made = deliveries()
    connection.ensure_connection()
    round_backend = connection.connection.info.backend_pid  # the coordinator is this thread
    terminate = backend_terminator()
    killed: list[int] = []

    def answer(request: Any) -> Reply:
        if not killed:  # the first request: the database drops the round's connection
            terminate(round_backend)
            killed.append(round_backend)
        return Reply(200)

    receiver.respond = answer

    sending.send_due(budget=3)

    assert killed == [round_backend]
    assert connection.connection.info.backend_pid != round_backend  # it reconnected
    assert len(receiver.requests) == len(made)  # each sent once
    statuses = set(WebhookDelivery.objects.values_list("status", flat=True))
    assert statuses == {DeliveryStatus.DELIVERED}
    assert WebhookAttempt.objects.count() == len(made)
