"""Reads, always scoped to one company: another company's rows are simply not found."""

import functools
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from django.db.models import QuerySet
from django.http import Http404

from config.rows import Columns, hot_cursor

from .models import Company, CompanyMember, Job, JobEvent, JobEventKind, PushResult, PushStatus

# The reads of every authenticated request and every poll are fixed statements, one each
# (see ``config.rows``): the API client behind a token, and the job it asks for.
_USER = Columns(get_user_model(), "u")
_MEMBER = Columns(CompanyMember, "m")
_COMPANY = Columns(Company, "c")
_JOB = Columns(Job, "j")
_REPORT = Columns(Job._meta.get_field("report").related_model, "r")
_USER_MEMBERSHIP = CompanyMember._meta.get_field("user").remote_field  # user.company_membership
_REPORT_JOB = Job._meta.get_field("report").remote_field  # report.job (the forward side)


def _q(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _column(model: Any, field: str) -> str:
    return _q(model._meta.get_field(field).column)


def _report_join() -> str:
    """The job's report (alias ``r``) beside the job (alias ``j``)."""
    report = _REPORT.model
    return (
        f"LEFT JOIN {_q(report._meta.db_table)} r "
        f"ON r.{_q(str(_REPORT_JOB.column))} = j.{_column(Job, 'id')} "
    )


def _job_from(row: Any, start: int, company: Company | None) -> Job | None:
    job = _JOB.instance(row, start)
    if job is None:
        return None
    report = _REPORT.instance(row, start + _JOB.width)
    Job.report.related.set_cached_value(job, report)
    if report is not None:
        _REPORT_JOB.set_cached_value(report, job)
    if company is not None:
        job.company = company
    return job


@functools.cache
def _api_user_sql(*, job_field: str | None) -> str:
    User = get_user_model()
    joins = (
        f"LEFT JOIN {_q(CompanyMember._meta.db_table)} m "
        f"ON m.{_column(CompanyMember, 'user')} = u.{_column(User, User._meta.pk.name)} "
        f"LEFT JOIN {_q(Company._meta.db_table)} c "
        f"ON c.{_column(Company, 'id')} = m.{_column(CompanyMember, 'company')} "
    )
    columns = f"{_USER.sql}, {_MEMBER.sql}, {_COMPANY.sql}"
    if job_field is not None:
        columns += f", {_JOB.sql}, {_REPORT.sql}"
        joins += (
            f"LEFT JOIN {_q(Job._meta.db_table)} j "
            f"ON j.{_column(Job, 'company')} = m.{_column(CompanyMember, 'company')} "
            f"AND j.{_column(Job, job_field)} = %s " + _report_join()
        )
    return (
        f"SELECT {columns} FROM {_q(User._meta.db_table)} u {joins}"
        f"WHERE u.{_column(User, User._meta.pk.name)} = %s"
    )


def api_user_get(user_id: Any, *, job: tuple[str, Any] | None = None) -> AbstractUser | None:
    """The user behind a token, with its membership and company (``user.company_membership``).

    ``job``: ``(field, value)``, e.g. ``("id", job_id)`` or ``("code", code)``: also read that
    job of the user's company, with its report, in the same statement. It is left in
    ``user.jobtrail_jobs`` (``{(field, value): job or None}``), so a poll is one query in all
    (see ``job_get`` and ``job_get_by_code``).
    """
    User = get_user_model()
    try:
        params = [_USER.param(User._meta.pk.name, user_id)]
    except (ValueError, TypeError, DjangoValidationError):
        return None  # a user id claim no user can have
    job_field = None
    if job is not None:
        try:
            params.insert(0, _JOB.param(job[0], job[1]))
            job_field = job[0]
        except (ValueError, TypeError, DjangoValidationError):
            job = None  # no job can match: the view answers it as it would any unknown job
    sql = _api_user_sql(job_field=job_field)
    with hot_cursor(connection) as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    user = _USER.instance(row)
    assert user is not None
    membership = _MEMBER.instance(row, _USER.width)
    company = None
    if membership is not None:
        company = _COMPANY.instance(row, _USER.width + _MEMBER.width)
        assert company is not None  # a membership's company is NOT NULL
        membership.user = user
        membership.company = company
    _USER_MEMBERSHIP.set_cached_value(user, membership)
    if job is not None:
        start = _USER.width + _MEMBER.width + _COMPANY.width
        read = {(job[0], str(job[1])): _job_from(row, start, company)}
        user.jobtrail_jobs = read  # type: ignore[attr-defined]
    return user


@functools.cache
def _job_sql(field: str, *, scoped: bool, lock: bool) -> str:
    where = f"j.{_column(Job, field)} = %s"
    if scoped:
        where = f"j.{_column(Job, 'company')} = %s AND " + where
    sql = f"SELECT {_JOB.sql}, {_REPORT.sql} FROM {_q(Job._meta.db_table)} j {_report_join()}"
    sql += f"WHERE {where}"
    if lock and connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF j"  # the job row only, as select_for_update(of=("self",))
    elif lock and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


def job_with_report(
    *, company: Company | None, field: str, value: Any, lock: bool = False
) -> Job | None:
    """What ``job_queryset(company=company).filter(<field>=value).first()`` reads (every
    company's jobs with ``company=None``), as one fixed statement; ``lock``: the job row is
    locked until the transaction ends, as ``select_for_update(of=("self",))`` does.

    Raises ``ValueError`` / ``ValidationError`` for a value the field cannot hold.
    """
    params = [_JOB.param(field, value)]
    if company is not None:
        params.insert(0, _JOB.param("company", company.pk))
    with hot_cursor(connection) as cursor:
        cursor.execute(_job_sql(field, scoped=company is not None, lock=lock), params)
        row = cursor.fetchone()
    return None if row is None else _job_from(row, 0, company)


def job_queryset_all() -> QuerySet[Job]:
    """Every company's jobs with their reports joined: one query reads all a job shows.

    Push result counts are columns of the job row; nothing here reads push results.
    """
    return Job.objects.select_related("report")


def job_queryset(*, company: Company) -> QuerySet[Job]:
    return job_queryset_all().filter(company=company)


def job_read_with(
    read_with: Any, field: str, value: Any, *, company: Company | None, take: bool = False
) -> tuple[bool, Job | None]:
    """Whether the authentication read this job with the API client (``api_user_get(...,
    job=(field, value))``), and then the job, or None if there is none of ``company``'s.

    ``take``: use that read once (a retry of a change reads again).
    """
    read = getattr(read_with, "jobtrail_jobs", None)
    key = (field, str(value))
    if not read or key not in read:
        return False, None
    job = read.pop(key) if take else read[key]
    if job is None or (company is not None and job.company_id != company.pk):
        return True, None
    return True, job


def job_get(*, company: Company, job_id: Any, read_with: Any = None) -> Job:
    """The company's job ``job_id`` or 404.

    ``read_with``: the user read by ``api_user_get(..., job=("id", job_id))``, whose statement
    read the job already (no second query).
    """
    found, job = job_read_with(read_with, "id", job_id, company=company)
    if found:
        if job is None:
            raise Http404("No such job.")
        return job
    try:
        job = job_with_report(company=company, field="id", value=job_id)
    except (ValueError, TypeError, DjangoValidationError) as exc:
        raise Http404("No such job.") from exc
    if job is None:
        raise Http404("No such job.")
    return job


def job_get_by_code(*, company: Company, code: str, read_with: Any = None) -> Job | None:
    """The company's job with this code, or None; ``read_with`` as for ``job_get``."""
    found, job = job_read_with(read_with, "code", code, company=company)
    if found:
        return job
    return job_with_report(company=company, field="code", value=code)


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
    failed = job.push_results.filter(status=PushStatus.FAILED)
    return list(failed.order_by("received_at", "id")[:limit])
