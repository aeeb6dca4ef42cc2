"""Every admin job-list view (and the report list) reads its rows through an index, in the
order it shows them.

At a million jobs a view that scans or sorts the table is ten times slower than at a thousand
(bench/scale.py measures it); here, on a small table, the planner is told to avoid both
(``enable_seqscan``/``enable_sort`` off) and each query of each view must still manage without:
only an index that gives the view's rows in the view's order allows that. (PostgreSQL's
incremental sort stays allowed when sorting by a near-unique column: it orders the rare ties in
passing. After a column of a few values it would sort a third of the table: not allowed.)
"""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.models import FailureReason, Job, JobStatus
from tests.factories import CompanyFactory, JobFactory, job_in_status

pytestmark = pytest.mark.django_db

LIST = "/admin/jobs/job/"
NEAR_UNIQUE = ("code", "last_activity_at", "created_at")
NEW_INDEXES = {
    "jobs_job": {
        "job_code",
        "job_activity",
        "job_reason_created",
        "job_reason_created_asc",
        "job_status_created_asc",
        "job_type_created_asc",
        "job_company_created_asc",
    },
    "jobs_jobevent": {"job_event_actor"},
    "jobs_pushresult": {"push_result_job_received"},
}


def _indexes(table: str) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    # a unique constraint's index counts too (the planner may count a company's jobs on
    # job_code_unique_per_company, which leads with company_id)
    return {name: c["columns"] for name, c in constraints.items() if c["index"] or c["unique"]}


def test_the_scale_indexes_exist_and_the_redundant_ones_are_gone() -> None:
    for table, names in NEW_INDEXES.items():
        assert names <= set(_indexes(table)), table
    # single-column indexes that a composite one leading with the same column made redundant
    for table, column in [
        ("jobs_job", "company_id"),
        ("jobs_job", "type"),
        ("jobs_jobevent", "job_id"),
        ("jobs_pushresult", "job_id"),
        ("webhooks_webhookdelivery", "company_id"),
        ("webhooks_webhookdelivery", "endpoint_id"),
    ]:
        assert [column] not in _indexes(table).values(), (table, column)


def list_views() -> dict[str, tuple[str, set[str]]]:
    """Every view of the job list (each filter, the code search, each sortable column both
    ways) and the columns an index serving it leads with (what it filters on, or sorts by)."""
    model_admin = admin.site._registry[Job]
    request = RequestFactory().get(LIST)
    request.user = User.objects.get(is_superuser=True)
    changelist = model_admin.get_changelist_instance(request)
    views = {
        "list": (LIST, {"created_at"}),
        # any case, by prefix: UPPER(code) LIKE 'JOB-00000042%' (jobs migration 0009)
        "search by code": (f"{LIST}?q=JOB-00000042", {"job_code_upper_pattern"}),
        "type": (f"{LIST}?type=sync", {"type"}),
        "created from": (
            f"{LIST}?created_from={(timezone.now() - timedelta(days=2)).date()}",
            {"created_at"},
        ),
        # a few rows here: the planner may as well read the list's order (the partial index
        # job_processing_activity serves it at scale)
        "stuck": (f"{LIST}?stuck=1", {"status", "last_activity_at", "created_at"}),
    }
    for status in JobStatus.values:
        views[f"status {status}"] = (f"{LIST}?status__exact={status}", {"status"})
    for reason in FailureReason.values:
        views[f"reason {reason}"] = (f"{LIST}?failure_reason__exact={reason}", {"failure_reason"})
    for label, (url, columns) in list(views.items()):
        # a filter more than 1 job in 20 passes is served as well by reading the list's order
        # until the page is full; a selective one needs an index on its column
        if "=" in url and not url.startswith(f"{LIST}?q="):
            key, value = url.split("?", 1)[1].split("=", 1)
            lookup = {"type": "type", "stuck": None, "created_from": None}.get(key, key)
            if lookup and Job.objects.filter(**{lookup: value}).count() * 20 > Job.objects.count():
                # (the failure-reason filter also says status=failed, which it implies)
                views[label] = (url, columns | {"created_at", "status"})
    for index, name in enumerate(changelist.list_display):
        field = changelist.get_ordering_field(name)
        if field is None:
            continue
        column = Job._meta.get_field(str(field).removesuffix("_id")).column
        views[f"sort {name}"] = (f"{LIST}?o={index}", {column})
        views[f"sort -{name}"] = (f"{LIST}?o=-{index}", {column})
    return views


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


def _explain(sql: str, *, sort: bool, incremental_sort: bool) -> list[dict[str, Any]]:
    """The plan's nodes, the planner told to avoid sequential scans (and sorts)."""
    settings = {
        "enable_seqscan": "off",
        "enable_sort": "on" if sort else "off",
        "enable_incremental_sort": "on" if incremental_sort else "off",
    }
    with connection.cursor() as cursor:
        for name, value in settings.items():
            cursor.execute(f"SET LOCAL {name} = {value}")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        raw = cursor.fetchone()[0]
        for name in settings:
            cursor.execute(f"RESET {name}")
    return _plan_nodes((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


@pytest.mark.postgres
def test_every_job_list_view_is_index_backed(staff: Client) -> None:
    companies = [CompanyFactory() for _ in range(3)]
    jobs = [
        JobFactory(company=companies[n % 3], code=f"JOB-{n:08d}", type=["export", "sync"][n % 2])
        for n in range(60)
    ]
    for job in jobs[:6]:
        job_in_status(JobStatus.FAILED, company=job.company)
    # failed is common (status=failed is not selective), other reasons than this one are rare
    Job.objects.filter(pk__in=[j.pk for j in jobs[20:50]]).update(
        status=JobStatus.FAILED, failure_reason=FailureReason.SERVICE_TIMEOUT
    )
    Job.objects.filter(pk__in=[j.pk for j in jobs[:20]]).update(status=JobStatus.PROCESSING)
    Job.objects.filter(pk__in=[j.pk for j in jobs[:5]]).update(  # stuck
        last_activity_at=timezone.now() - timedelta(days=3)
    )
    for n, job in enumerate(jobs[10:]):  # the created_from filter keeps a few
        Job.objects.filter(pk=job.pk).update(
            created_at=timezone.now() - timedelta(days=30, minutes=n)
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    # an expression index (the console's case-insensitive search) stands for itself
    leading = {name: (columns or [name])[0] for name, columns in _indexes("jobs_job").items()}
    views = list_views()
    assert views["status completed"][1] == {"status"}  # selective: no failed job completed
    assert views["status failed"][1] == {"status", "created_at"}
    assert views["reason job_expired"][1] == {"failure_reason"}
    # a third of the jobs: reading the list's order until the page is full serves it as well
    views["company"] = (
        f"{LIST}?company__id__exact={companies[0].pk}",
        {"company_id", "created_at"},
    )
    assert {"sort code", "sort -last_activity", "sort -company_display"} <= set(views)

    for label, (url, columns) in views.items():
        with CaptureQueriesContext(connection) as queries:
            assert staff.get(url).status_code == 200, label
        job_queries = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith("SELECT") and 'FROM "jobs_job"' in q["sql"]
        ]
        assert job_queries, label
        for sql in job_queries:
            if "WHERE" not in sql and "ORDER BY" not in sql:
                continue  # the page count of the whole table (estimated at scale)
            # the code search finds a row or two, sorted in passing; the rest come in order,
            # a near-unique column's rare ties sorted in passing
            nodes = _explain(
                sql,
                sort=label == "search by code",
                incremental_sort=label.startswith("sort") and bool(columns & set(NEAR_UNIQUE)),
            )
            scans = [n for n in nodes if n.get("Relation Name") == "jobs_job"]
            assert scans, (label, sql)
            for scan in scans:
                if scan["Node Type"] == "Bitmap Heap Scan":
                    continue  # its index is the Bitmap Index Scan below it
                assert scan["Node Type"] != "Seq Scan", (label, sql)
            used = {leading[n["Index Name"]] for n in nodes if n.get("Index Name") in leading}
            assert used, (label, sql)
            if sql.startswith("SELECT COUNT(*)") and "created_at" in columns:
                continue  # most jobs pass: at scale the page count is the planner's estimate
            assert used <= columns, (label, used, sql)
            assert not any(n["Node Type"] == "Sort" for n in nodes) or label == "search by code"
            # an incremental sort is cheap only after a near-unique key (its groups are small)
            for node in nodes:
                if node["Node Type"] == "Incremental Sort":
                    presorted = " ".join(node["Presorted Key"])
                    assert any(c in presorted for c in NEAR_UNIQUE), (label, node)


@pytest.mark.postgres
def test_the_report_list_reads_an_index_in_its_order_and_estimates_its_count(
    staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report per finished job: at a million the console's report list sorted the whole
    table for each page and counted it (COUNT(*)) for the paginator."""
    from config.admin import EstimatedCountPaginator
    from reports.models import Report

    for job in [JobFactory() for _ in range(30)]:
        Report.objects.create(job=job, status="ready")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE reports_report")
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 0)  # as at scale

    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/admin/reports/report/")

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
    report_queries = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and 'FROM "reports_report"' in q["sql"]
    ]
    assert report_queries
    assert not [sql for sql in report_queries if sql.startswith("SELECT COUNT(*)")]
    for sql in report_queries:
        nodes = _explain(sql, sort=False, incremental_sort=False)
        scans = [n for n in nodes if n.get("Relation Name") == "reports_report"]
        assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), sql
        assert not any(n["Node Type"] == "Sort" for n in nodes), sql
        assert any(n.get("Index Name") == "report_created" for n in nodes), sql
