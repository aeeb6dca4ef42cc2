"""Reads, always scoped to one company: another company's rows are simply not found."""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404

from .models import Company, Job, JobEvent, JobEventKind, PushResult, PushStatus


def job_queryset_all() -> QuerySet[Job]:
    """Every company's jobs with their reports joined: one query reads all a job shows.

    Push result counts are columns of the job row; nothing here reads push results.
    """
    return Job.objects.select_related("report")


def job_queryset(*, company: Company) -> QuerySet[Job]:
    return job_queryset_all().filter(company=company)


def job_get(*, company: Company, job_id: Any) -> Job:
    try:
        return job_queryset(company=company).get(pk=job_id)
    except (Job.DoesNotExist, ValueError, TypeError, DjangoValidationError) as exc:
        raise Http404("No such job.") from exc


def job_get_by_code(*, company: Company, code: str) -> Job | None:
    return job_queryset(company=company).filter(code=code).first()


def job_list(
    *,
    company: Company,
    status: str | None = None,
    type: str | None = None,
    code: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Job]:
    jobs = job_queryset(company=company)
    if status:
        jobs = jobs.filter(status=status)
    if type:
        jobs = jobs.filter(type=type)
    if code:
        jobs = jobs.filter(code=code)
    if created_after:
        jobs = jobs.filter(created_at__gte=created_after)
    if created_before:
        jobs = jobs.filter(created_at__lt=created_before)
    return jobs


def job_push_counts(job: Job) -> dict[str, int]:
    """Push result counts (kept on the job row)."""
    return {"success": job.push_success_count, "failed": job.push_failed_count}


def job_event_list(*, job: Job) -> QuerySet[JobEvent]:
    """The job's timeline: its numbered events (``kind=timeline``; see ``JobEvent``).

    ``sequence IS NOT NULL`` (implied by the kind) lets the (job, sequence) index skip the
    unnumbered push-result and report events, however many a job holds.
    """
    return (
        job.events.filter(kind=JobEventKind.TIMELINE, sequence__isnull=False)
        .select_related("actor")
        .order_by("sequence")
    )


def push_result_list(*, job: Job, status: str | None = None) -> QuerySet[PushResult]:
    results = job.push_results.all()
    if status:
        results = results.filter(status=status)
    return results


def failed_push_results(*, job: Job, limit: int) -> list[PushResult]:
    return list(job.push_results.filter(status=PushStatus.FAILED).order_by("id")[:limit])
