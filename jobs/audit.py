"""The admin's audit trail (``django.contrib.admin`` ``LogEntry`` rows) outlives its staff users.

Django's ``LogEntry.user`` cascades: deleting a staff user would delete every record of what
they did. A user whom log entries name cannot be deleted, by any path (the admin, the shell, a
queryset ``delete()``): the ``pre_delete`` guard refuses with ``ProtectedError`` before anything
is deleted. Deactivating the user (``is_active = False``) is the way to remove their access.

A company's jobs and webhook deliveries (with their events and attempts) are kept the same way:
their ``company`` foreign keys are ``PROTECT``.
"""

from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import LogEntry
from django.db.models import Count, ProtectedError

from webhooks.models import WebhookDelivery

from .models import Job

DEACTIVATE_ADVICE = "deactivate the user instead (untick Active): the audit trail keeps them"
COMPANY_RECORDS_KEPT = "it has jobs or webhook deliveries, which are never deleted with it"


def log_entry_counts(*, user_ids: Iterable[Any]) -> dict[Any, int]:
    """How many admin log entries name each of these users (absent: none)."""
    rows = (
        LogEntry.objects.filter(user_id__in=list(user_ids))
        .values("user_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["user_id"]: row["n"] for row in rows}


def refuse_user_with_log_entries(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``pre_delete`` of the user model: refuse to delete a user whom log entries name."""
    entries = LogEntry.objects.filter(user_id=instance.pk)
    count = entries.count()
    if count:
        raise ProtectedError(
            f"Cannot delete user {instance}: {count} admin log entries name them; "
            f"{DEACTIVATE_ADVICE}.",
            set(entries[:10]),
        )


def companies_with_records(*, company_ids: Iterable[Any]) -> set[Any]:
    """Which of these companies have jobs or webhook deliveries (and so cannot be deleted).

    Two index probes per company at most (``job_company_created``, ``webhook_delivery_company``
    lead with the company), never a scan of their rows.
    """
    kept: set[Any] = set()
    for pk in company_ids:
        if (
            Job.objects.filter(company_id=pk).exists()
            or WebhookDelivery.objects.filter(company_id=pk).exists()
        ):
            kept.add(pk)
    return kept
