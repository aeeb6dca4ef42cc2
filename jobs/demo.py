"""Demo data so a newcomer opens a lived-in system (``manage.py seed_demo``)."""

import random
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from webhooks.services import endpoint_create

from . import services
from .accounts import ApiClientCredentials, api_client_create
from .models import Company, FailureReason
from .services import PushResultData

DEMO_COMPANY = "Demo Company"
OTHER_COMPANY = "Globex Ltd"
JOB_TYPES = ["export", "expense_export", "customer_case_bulk_update"]
DATA_TYPES = ["invoices", "bills", "journalEntries", "payments"]
SERVICES = ["quickbooks", "xero", "netsuite"]


def demo_is_seeded() -> bool:
    return Company.objects.filter(name=DEMO_COMPANY, jobs__isnull=False).exists()


def _push(rng: random.Random, job_id: object, n: int, *, failed: bool) -> None:
    now = timezone.now()
    services.push_result_record(
        job_id=job_id,
        data=PushResultData(
            push_communication_id=f"{rng.getrandbits(96):024x}",
            status="failed" if failed else "success",
            connection_id="CON-0a4e97aa-7a77-bbbb-00aa-b1b1001aa00",
            business_name="BIZ-d6b1c7d3-fe41-4447-ae72-3814b78b5142",
            service_name=rng.choice(SERVICES),
            data_type=rng.choice(DATA_TYPES),
            source_object_ids=[str(rng.randint(100, 9999))] if not failed else [],
            requested_on=now - timedelta(seconds=5),
            completed_on=now,
            response_code=400 if failed else 200,
            validation_errors=(
                [
                    {
                        "field": "currencyRef",
                        "message": "Business Validation Error: Multi Currency should be "
                        "enabled to perform this operation.",
                    }
                ]
                if failed
                else []
            ),
            service_account_ref={"id": "DEV", "entityRef": {"id": "100"}},
            request_id=f"req-{n}",
        ),
    )


@transaction.atomic
def seed_demo(*, jobs: int = 40, seed: int = 7) -> ApiClientCredentials:
    """Create the demo company, its API client ``demo`` and ``jobs`` jobs in every state."""
    rng = random.Random(seed)
    creds = api_client_create(company_name=DEMO_COMPANY, username="demo", password=None)
    api_client_create(company_name=OTHER_COMPANY, username="globex", password=None)
    other = Company.objects.get(name=OTHER_COMPANY)
    # A receiver that is down, so the delivery log and the dashboard have failures to show.
    endpoint_create(
        company=creds.company,
        url="http://127.0.0.1:9/demo-receiver-that-is-down",
        events=["jobs.completed", "jobs.completed_with_errors", "jobs.failed"],
        description="Demo endpoint whose receiver is down",
    )
    outcomes = ["pending", "processing", "completed", "completed_with_errors", "failed", "cancel"]
    for i in range(jobs):
        company = creds.company if i % 8 else other
        total = rng.randint(3, 12)
        job = services.job_create(
            company=company,
            type=rng.choice(JOB_TYPES),
            total_records=total,
            metadata={"batch": i, "source": "demo"},
        )
        outcome = outcomes[i % len(outcomes)]
        if outcome == "pending":
            continue
        services.job_start(job_id=job.pk, message="Export started")
        failures = rng.randint(1, 3) if outcome == "completed_with_errors" else 0
        done = total if outcome in ("completed", "completed_with_errors") else rng.randint(0, total)
        for n in range(done):
            _push(rng, job.pk, n, failed=n < failures)
        if done:
            services.job_record_progress(
                job_id=job.pk, effected_records=done - failures, message=f"{done}/{total} pushed"
            )
        if outcome == "completed":
            services.job_complete(job_id=job.pk, message="All records exported")
        elif outcome == "completed_with_errors":
            services.job_complete_with_errors(
                job_id=job.pk, message=f"{failures} of {total} records failed validation"
            )
        elif outcome == "failed":
            services.job_fail(
                job_id=job.pk,
                failure_reason=rng.choice(
                    [
                        FailureReason.ACCOUNTING_SYSTEM_UNREACHABLE,
                        FailureReason.ACCOUNTING_SYSTEM_AUTHENTICATION_FAILURE,
                        FailureReason.VALIDATION_FAILURE,
                    ]
                ),
                message="The accounting system refused the export",
            )
        elif outcome == "cancel":
            services.job_cancel(job_id=job.pk, actor=None, message="Canceled by the customer")
    return creds
