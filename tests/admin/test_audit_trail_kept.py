"""The audit trail stays: deleting a staff user or a company never deletes what was recorded."""

from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client
from django.urls import reverse

from jobs.models import Company, Job
from tests.factories import CompanyFactory, JobFactory
from webhooks.models import WebhookAttempt, WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import endpoint_create, endpoint_send_test

pytestmark = pytest.mark.django_db


def bulk_delete_pages(staff: Client, changelist: str, pks: list[Any]) -> list[str]:
    """The "Delete selected" action on ``pks``, asked and then confirmed: both pages (200)."""
    pages = []
    for extra in ({}, {"post": "yes"}):
        response = staff.post(
            changelist,
            {"action": "delete_selected", helpers.ACTION_CHECKBOX_NAME: pks, **extra},
        )
        assert response.status_code == 200
        pages.append(response.content.decode())
    return pages


@pytest.fixture
def support(django_user_model: Any) -> Any:
    """A staff user who has done something in the admin (renamed a company): one LogEntry."""
    user = django_user_model.objects.create_superuser("support", "s@example.com", "pw-12345678x")
    client = Client()
    client.force_login(user)
    company = CompanyFactory(name="Before")
    response = client.post(
        reverse("admin:jobs_company_change", args=[company.pk]),
        {
            "name": "After",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
            "members-MIN_NUM_FORMS": "0",
            "members-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert LogEntry.objects.filter(user=user).count() == 1
    return user


def test_a_user_named_by_log_entries_cannot_be_deleted_by_any_code_path(
    support: Any, django_user_model: Any
) -> None:
    with pytest.raises(ProtectedError, match="deactivate the user instead"), transaction.atomic():
        support.delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        django_user_model.objects.filter(username="support").delete()
    assert django_user_model.objects.filter(pk=support.pk).exists()
    assert LogEntry.objects.filter(user=support).count() == 1
    # deactivating is the way out: the entries stay with their user
    support.is_active = False
    support.save()
    assert LogEntry.objects.get(user=support).get_change_message() == "Changed Name."


def test_a_user_without_log_entries_can_still_be_deleted(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("nobody", "n@example.com", "pw-12345678x")
    user.delete()
    assert not django_user_model.objects.filter(username="nobody").exists()


def test_the_admin_offers_no_delete_for_such_a_user_and_advises_deactivating(
    staff: Client, support: Any, django_user_model: Any
) -> None:
    page = staff.get(reverse("admin:auth_user_change", args=[support.pk])).content.decode()
    assert reverse("admin:auth_user_delete", args=[support.pk]) not in page
    assert 'class="deletelink"' not in page
    advice = page[page.index('id="audit-trail"') :]
    assert advice.startswith(
        'id="audit-trail">1 admin log entries name this user, so it cannot be deleted: '
        "deactivate the user instead (untick Active)"
    )
    delete = reverse("admin:auth_user_delete", args=[support.pk])
    assert staff.get(delete).status_code == 403
    assert staff.post(delete, {"post": "yes"}).status_code == 403

    # the bulk action lists the user as protected, with the advice, and deletes nothing
    other = django_user_model.objects.create_user("other", "o@example.com", "pw-12345678x")
    changelist = reverse("admin:auth_user_changelist")
    for text in bulk_delete_pages(staff, changelist, [support.pk, other.pk]):
        assert "protected related objects" in text
        assert "support: 1 admin log entries; deactivate the user instead" in text
    assert django_user_model.objects.filter(pk__in=[support.pk, other.pk]).count() == 2
    assert LogEntry.objects.filter(user=support).count() == 1

    # one without log entries keeps its Delete button and is deleted
    page = staff.get(reverse("admin:auth_user_change", args=[other.pk])).content.decode()
    assert reverse("admin:auth_user_delete", args=[other.pk]) in page
    assert "None: the user can be deleted." in page
    done = staff.post(reverse("admin:auth_user_delete", args=[other.pk]), {"post": "yes"})
    assert done.status_code == 302
    assert not django_user_model.objects.filter(pk=other.pk).exists()


def _company_with_a_test_delivery() -> tuple[Company, WebhookDelivery]:
    """A company without jobs whose endpoint received a test event (a delivery, an attempt)."""
    company = CompanyFactory()
    endpoint = endpoint_create(company=company, url="http://127.0.0.1:9/hook", events=["*"])
    delivery = endpoint_send_test(endpoint=endpoint)
    deliver(delivery.pk)  # port 9: fails, one attempt logged
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    return company, delivery


def test_deleting_a_company_never_deletes_its_deliveries_attempts_or_jobs() -> None:
    company, delivery = _company_with_a_test_delivery()
    with pytest.raises(ProtectedError), transaction.atomic():
        company.delete()
    assert WebhookDelivery.objects.filter(pk=delivery.pk).exists()
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1

    with_jobs = CompanyFactory()
    job = JobFactory(company=with_jobs)
    with pytest.raises(ProtectedError), transaction.atomic():
        Company.objects.filter(pk=with_jobs.pk).delete()
    assert Job.objects.filter(pk=job.pk).exists()

    empty = CompanyFactory()  # nothing recorded: it can go
    empty.delete()
    assert not Company.objects.filter(pk=empty.pk).exists()


def test_the_admin_refuses_to_delete_a_company_with_deliveries_or_jobs(staff: Client) -> None:
    company, delivery = _company_with_a_test_delivery()
    JobFactory(company=company)
    page = staff.get(reverse("admin:jobs_company_change", args=[company.pk])).content.decode()
    delete = reverse("admin:jobs_company_delete", args=[company.pk])
    assert delete not in page  # no Delete button
    assert staff.get(delete).status_code == 403
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    empty = CompanyFactory(name="Nothing recorded")
    changelist = reverse("admin:jobs_company_changelist")
    for text in bulk_delete_pages(staff, changelist, [company.pk, empty.pk]):
        assert "protected related objects" in text
        assert f"{company}: it has jobs or webhook deliveries, which are never deleted" in text
    assert Company.objects.filter(pk__in=[company.pk, empty.pk]).count() == 2
    assert Company.objects.filter(pk=company.pk).exists()
    assert WebhookDelivery.objects.filter(pk=delivery.pk).exists()
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1
    assert Job.objects.filter(company=company).count() == 1
