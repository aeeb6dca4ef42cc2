"""Every admin page runs exactly as many queries for many rows as for one (issue 13).

The tests iterate ``admin.site``'s registry: a model registered in the admin without a row
builder below fails ``test_every_registered_model_has_a_row_builder``, so a new model cannot
be left unmeasured. Each builder adds one row of its model, varied by its number (different
companies, endpoints, jobs and statuses; push results, events, deliveries and attempts
attached), through the services where there is one. A mismatch prints the query shapes the
more rows added, then every query they ran.
"""

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from jobs import services
from jobs.ingest import push_correlation_register, push_ingest
from jobs.models import Company, FailureReason, Job, JobStatus, PushResult, UnmatchedPush
from reports.models import Report
from reports.services import report_build
from tests.factories import ApiClientFactory, CompanyFactory, JobFactory, UserFactory
from tests.receiver import Receiver, Reply
from tests.relay import run_relay
from webhooks.models import EndpointRole, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.sending import deliver
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

FEW, MANY = 1, 20  # rows of the model in a list (or related rows on a page)
SINCE = "2020-01-01 00:00:00+00:00"  # an aware lower bound for the date filters
FILTER_FEW, FILTER_MANY = 6, 24  # every variant once, then four times
REASONS = [FailureReason.SERVICE_TIMEOUT, FailureReason.VALIDATION_FAILURE]
STATUS_CYCLE = [
    JobStatus.PENDING,
    JobStatus.PROCESSING,  # quiet for two hours: stuck
    JobStatus.COMPLETED,
    JobStatus.COMPLETED_WITH_ERRORS,
    JobStatus.FAILED,
    "canceled",  # failed as canceled_by_user by a staff user
]


# --- counting --------------------------------------------------------------------------------


@dataclass
class Run:
    url: str
    sql: list[str]
    listed: int | None  # rows in the change list, when the page is one
    html: str = ""

    def __len__(self) -> int:
        return len(self.sql)


def run(client: Client, url: str, params: dict[str, str] | None = None, status: int = 200) -> Run:
    client.get(url, params or {})  # warm per-process caches (content types, permissions)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == status, (url, params, response.status_code)
    changelist = response.context["cl"] if response.context and "cl" in response.context else None
    listed = len(changelist.result_list) if changelist is not None else None
    return Run(url, [q["sql"] for q in captured.captured_queries], listed)


def shape(sql: str) -> str:
    """The query with its literals (ids, times, strings) taken out: what repeats per row."""
    return re.sub(r"'[^']*'(::\w+)?|\b\d+\b", "?", sql)


def assert_same_count(few: Run, many: Run, what: str) -> None:
    if len(few) == len(many):
        return
    extra = Counter(map(shape, many.sql)) - Counter(map(shape, few.sql))
    repeated = "\n".join(f"  +{n} x {sql}" for sql, n in extra.most_common())
    everything = "\n".join(many.sql)
    pytest.fail(
        f"{what}: {len(few)} queries with few rows, {len(many)} with many ({few.url}).\n"
        f"The queries the rows added:\n{repeated}\nEvery query with many rows:\n{everything}"
    )


# --- the rows --------------------------------------------------------------------------------


@dataclass
class World:
    """Companies with an endpoint each whose receiver answers 200, 302 (failed for good) or
    nothing (port 9: retrying), or whose deliveries are left pending."""

    receiver: Receiver
    staff_user: Any
    companies: dict[int, Company] = field(default_factory=dict)

    KINDS = ("ok", "moved", "down", "later")

    def url(self, k: int) -> str:
        kind = self.KINDS[k % len(self.KINDS)]
        if kind == "down":
            return f"http://127.0.0.1:9/down-{k}"
        return f"{self.receiver.url}/{kind}-{k}"

    def company(self, k: int) -> Company:
        """Company ``k`` ("Acme k"), with an API client and an endpoint for every event."""
        if k not in self.companies:
            company = CompanyFactory(name=f"Acme {k:02d}")
            ApiClientFactory(company=company)
            endpoint_create(company=company, url=self.url(k), events=["*"])
            self.companies[k] = company
        return self.companies[k]

    def send(self, job: Job) -> None:
        """Relay, then attempt every delivery of the job once (unless its URL is "later")."""
        run_relay()
        for delivery in WebhookDelivery.objects.filter(object_id=str(job.pk), attempts=0):
            if delivery.endpoint.url.rsplit("/", 1)[-1].startswith("later"):
                continue
            deliver(delivery.pk)

    def job(self, i: int, *, company: Company | None = None) -> Job:
        """A job in the ``i``-th status of the cycle, with events, push results, deliveries
        and their attempts, and its report when it completed."""
        company = company or self.company(i % 5)
        status = STATUS_CYCLE[i % len(STATUS_CYCLE)]
        job = JobFactory(
            company=company,
            type=("export", "bulk_update")[i % 2],
            total_records=10 + i,
            metadata={"customer": "acme", "n": i},
        )
        if status != JobStatus.PENDING:
            services.job_start(job_id=job.pk)
            services.job_record_progress(job_id=job.pk, effected_records=i, message=f"step {i}")
            services.push_result_record(
                job_id=job.pk,
                data=services.PushResultData(
                    push_communication_id=f"pc-{job.code}",
                    request_id=f"req-{i}",
                    status="failed" if i % 2 else "success",
                    data_type=("invoices", "bills")[i % 2],
                    service_name="xero",
                    validation_errors=[{"field": "ref", "message": f"bad {i}"}] if i % 2 else [],
                ),
            )
        if status == JobStatus.COMPLETED:
            services.job_complete(job_id=job.pk)
        elif status == JobStatus.COMPLETED_WITH_ERRORS:
            services.job_complete_with_errors(job_id=job.pk)
        elif status == JobStatus.FAILED:
            reason = REASONS[(i // len(STATUS_CYCLE)) % len(REASONS)]
            services.job_fail(job_id=job.pk, failure_reason=reason, message="gave up")
        elif status == "canceled":
            services.job_cancel(job_id=job.pk, actor=self.staff_user, source="admin")
        elif status == JobStatus.PROCESSING:
            quiet = timezone.now() - timedelta(hours=2)
            Job.objects.filter(pk=job.pk).update(last_activity_at=quiet)
        self.send(job)
        if status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS) and i % 4 != 2:
            report_build(job_id=job.pk)  # else its report stays pending
            run_relay()
        job.refresh_from_db()
        return job


def add_company(w: World, i: int) -> Company:
    company = w.company(100 + i)
    w.job(i, company=company)
    return company


def add_job(w: World, i: int) -> Job:
    return w.job(i)


def add_push_result(w: World, i: int) -> PushResult:
    job = w.job(1 + 6 * i)  # processing: one push result each
    return PushResult.objects.get(job=job)


def add_unmatched_push(w: World, i: int) -> UnmatchedPush:
    company = w.company(i % 5)
    data = services.PushResultData(
        push_communication_id=f"early-{i}",
        request_id=f"req-early-{i}",
        status="failed" if i % 2 else "success",
        validation_errors=[{"field": "ref", "message": "x"}] if i % 2 else [],
    )
    push_ingest(company=company, data=data)
    if i % 3 == 2:  # its job registered it afterwards: attached
        job = JobFactory(company=company)
        push_correlation_register(
            job_id=job.pk, company=company, push_communication_id=data.push_communication_id
        )
    return UnmatchedPush.objects.get(
        company=company, push_communication_id=data.push_communication_id
    )


def add_endpoint(w: World, i: int) -> WebhookEndpoint:
    company = CompanyFactory(name=f"Acme endpoint {i:02d}")
    endpoint = endpoint_create(
        company=company,
        url=w.url(i) + "/acme",
        events=[["*"], ["jobs.*"], ["jobs.failed", "jobs.completed"]][i % 3],
        role=EndpointRole.INTEGRATION if i % 2 else EndpointRole.SUBSCRIBER,
        description=f"endpoint {i}",
    )
    if i % 4 == 3:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            is_active=False, disabled_reason="The receiver answered 410 Gone."
        )
    w.job(i, company=company)
    endpoint.refresh_from_db()
    return endpoint


def add_delivery(w: World, i: int) -> WebhookDelivery:
    """One jobs.create delivery (a hand-off for an integration endpoint) per row."""
    k = i % 5
    company = Company.objects.filter(name=f"Acme delivery {k}").first()
    if company is None:
        company = CompanyFactory(name=f"Acme delivery {k}")
        role = EndpointRole.INTEGRATION if k == 4 else EndpointRole.SUBSCRIBER
        endpoint_create(company=company, url=w.url(k), events=["jobs.create"], role=role)
    job = JobFactory(company=company)
    w.send(job)
    delivery = WebhookDelivery.objects.get(object_id=str(job.pk))
    if i % 3 == 1:  # retried twice more by hand, whatever the outcome
        for number in (2, 3):
            WebhookAttempt.objects.create(
                delivery=delivery, number=number, started_at=timezone.now(), status_code=500
            )
    return delivery


def add_report(w: World, i: int) -> Report:
    job = w.job(2 + 6 * i)  # completed; i % 4 == 2 keeps its report pending
    return Report.objects.get(job=job)


def add_user(w: World, i: int) -> Any:
    user = UserFactory(
        username=f"acme-user-{i}", email=f"u{i}@acme.test", is_staff=bool(i % 2), first_name="Acme"
    )
    group, _ = Group.objects.get_or_create(name=f"acme group {i % 3}")
    user.groups.add(group)
    user.user_permissions.add(*Permission.objects.order_by("pk")[i : i + 2])
    return user


def add_group(w: World, i: int) -> Group:
    group = Group.objects.create(name=f"acme group {i:02d}")
    group.permissions.add(*Permission.objects.order_by("pk")[i : i + 3])
    UserFactory(username=f"acme-member-{i}").groups.add(group)
    return group


def _schedule(i: int) -> dict[str, Any]:
    kind = i % 4
    if kind == 0:
        return {"interval": IntervalSchedule.objects.create(every=i + 1, period="minutes")}
    if kind == 1:
        return {"crontab": CrontabSchedule.objects.create(minute=str(i % 60), hour="*/2")}
    if kind == 2:
        return {"solar": SolarSchedule.objects.create(event="sunrise", latitude=i, longitude=i / 2)}
    when = timezone.now() + timedelta(days=i)
    return {"clocked": ClockedSchedule.objects.create(clocked_time=when), "one_off": True}


def add_periodic_task(w: World, i: int) -> PeriodicTask:
    return PeriodicTask.objects.create(
        name=f"acme task {i:02d}",
        task=("jobs.expire_stale_jobs", "webhooks.dispatch_due_deliveries")[i % 2],
        enabled=bool(i % 3),
        start_time=timezone.now() - timedelta(days=1),
        last_run_at=timezone.now() - timedelta(hours=i),
        **_schedule(i),
    )


def _with_tasks(schedule: models.Model, field_name: str, i: int) -> None:
    for n in range(2):
        PeriodicTask.objects.create(
            name=f"acme {field_name} {i}-{n}",
            task="jobs.expire_stale_jobs",
            one_off=field_name == "clocked",
            **{field_name: schedule},
        )


def add_interval(w: World, i: int) -> IntervalSchedule:
    schedule = IntervalSchedule.objects.create(every=i + 1, period=("seconds", "hours")[i % 2])
    _with_tasks(schedule, "interval", i)
    return schedule


def add_crontab(w: World, i: int) -> CrontabSchedule:
    schedule = CrontabSchedule.objects.create(minute=str(i), hour=str(i % 24), day_of_week="1-5")
    _with_tasks(schedule, "crontab", i)
    return schedule


def add_solar(w: World, i: int) -> SolarSchedule:
    schedule = SolarSchedule.objects.create(
        event=("sunrise", "sunset")[i % 2], latitude=10 + i, longitude=20 + i
    )
    _with_tasks(schedule, "solar", i)
    return schedule


def add_clocked(w: World, i: int) -> ClockedSchedule:
    schedule = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(hours=i))
    _with_tasks(schedule, "clocked", i)
    return schedule


def _access(i: int) -> dict[str, Any]:
    return {
        "username": f"acme{i}",
        "ip_address": f"10.0.0.{i % 250}",
        "user_agent": f"agent {i}",
        "http_accept": "text/html",
        "path_info": ("/admin/login/", "/api/v1/token/")[i % 2],
    }


def add_access_attempt(w: World, i: int) -> AccessAttempt:
    return AccessAttempt.objects.create(
        **_access(i), get_data="", post_data="username=x", failures_since_start=i + 1
    )


def add_access_log(w: World, i: int) -> AccessLog:
    logout = timezone.now() if i % 2 else None
    return AccessLog.objects.create(**_access(i), logout_time=logout)


def add_access_failure_log(w: World, i: int) -> AccessFailureLog:
    return AccessFailureLog.objects.create(**_access(i), locked_out=bool(i % 2))


Builder = Callable[[World, int], Any]

ROW_BUILDERS: dict[str, Builder] = {
    "auth.group": add_group,
    "auth.user": add_user,
    "django_celery_beat.periodictask": add_periodic_task,
    "django_celery_beat.clockedschedule": add_clocked,
    "django_celery_beat.crontabschedule": add_crontab,
    "django_celery_beat.solarschedule": add_solar,
    "django_celery_beat.intervalschedule": add_interval,
    "axes.accessattempt": add_access_attempt,
    "axes.accesslog": add_access_log,
    "axes.accessfailurelog": add_access_failure_log,
    "jobs.company": add_company,
    "jobs.job": add_job,
    "jobs.pushresult": add_push_result,
    "jobs.unmatchedpush": add_unmatched_push,
    "webhooks.webhookendpoint": add_endpoint,
    "webhooks.webhookdelivery": add_delivery,
    "reports.report": add_report,
}


def registered() -> list[str]:
    return sorted(model._meta.label_lower for model in admin.site._registry)


@pytest.fixture
def world(receiver: Receiver, admin_user: Any) -> Iterator[World]:
    receiver.respond = lambda request: (
        Reply(status=302, headers={"Location": "/elsewhere"})
        if request.path.startswith("/moved")
        else Reply()
    )
    yield World(receiver=receiver, staff_user=admin_user)


def urls(label: str) -> tuple[str, str]:
    app_label, model_name = label.split(".")
    return f"admin:{app_label}_{model_name}_changelist", f"admin:{app_label}_{model_name}_change"


def test_the_rows_vary_as_the_builders_say(world: World) -> None:
    """The builders make what the tests rely on: every job status, every delivery outcome."""
    jobs = [add_job(world, i) for i in range(FILTER_FEW)]
    deliveries = [add_delivery(world, i) for i in range(5)]
    pushes = [add_unmatched_push(world, i) for i in range(3)]
    assert {j.status for j in jobs} == set(JobStatus)
    assert Job.objects.filter(failure_reason=FailureReason.CANCELED_BY_USER).count() == 1
    outcomes = {(d.status, d.attempts > 0) for d in WebhookDelivery.objects.all()}
    assert {
        ("delivered", True),
        ("failed", True),
        ("pending", True),
        ("pending", False),
    } <= outcomes
    assert any(d.handoff for d in deliveries)
    assert WebhookAttempt.objects.filter(status_code=200).exists()
    assert {r.status for r in Report.objects.all()} == {"ready", "pending"}
    assert {r.status for r in PushResult.objects.all()} == {"success", "failed"}
    assert [p.job_id is not None for p in pushes] == [False, False, True]
    assert Company.objects.count() >= 5


# --- every registered model: its list and a row's page -----------------------------------------


def test_every_registered_model_has_a_row_builder() -> None:
    missing = [label for label in registered() if label not in ROW_BUILDERS]
    assert not missing, f"registered in the admin without a row builder here: {missing}"
    stale = [label for label in ROW_BUILDERS if label not in registered()]
    assert not stale, f"row builders of models no longer in the admin: {stale}"


@pytest.mark.parametrize("label", registered())
def test_list_and_page_run_as_many_queries_for_many_rows_as_for_one(
    label: str, world: World, staff: Client
) -> None:
    build = ROW_BUILDERS[label]
    changelist, change = urls(label)
    first = build(world, 0)
    page = reverse(change, args=[first.pk])
    few_list, few_page = run(staff, reverse(changelist)), run(staff, page)

    for i in range(1, MANY):
        build(world, i)

    many_list, many_page = run(staff, reverse(changelist)), run(staff, page)
    assert few_list.listed is not None and many_list.listed is not None
    assert many_list.listed - few_list.listed == MANY - FEW  # every new row is listed
    assert_same_count(few_list, many_list, f"the {label} list")
    assert_same_count(few_page, many_page, f"the page of one {label}")


# --- every list filter and a search term ---------------------------------------------------------

STUCK_ONLY = {"stuck": "1"}


@dataclass
class Single:
    """A query that selects one row whatever the table holds (an exact search)."""

    params: dict[str, str]


def filter_queries(label: str, first: Any) -> list[dict[str, str] | Single]:
    """Queries that apply every list filter of the model (with a search term where the model
    has one); each matches some of the first rows and more of the later ones."""
    company = str(getattr(first, "company_id", ""))
    window = {"created_from": "2020-01-01", "created_to": "2100-01-01"}
    queries: dict[str, list[dict[str, str] | Single]] = {
        "jobs.job": [
            {"status__exact": "failed", "failure_reason__exact": REASONS[0], "q": "acme"},
            {"type": "export", "company__id__exact": company, **window, "q": "ACME 0"},
            STUCK_ONLY,
        ],
        "jobs.pushresult": [
            {"status__exact": "failed", "data_type": "bills", "service_name": "xero"},
            Single({"q": getattr(first, "push_communication_id", "")}),
        ],
        "jobs.unmatchedpush": [
            {"attached": "no", "status__exact": "success", "company__id__exact": company},
            {"attached": "yes"},
            Single({"q": "early-2"}),
        ],
        "webhooks.webhookendpoint": [
            {"is_active__exact": "1", "role__exact": "subscriber", "q": "acme"},
        ],
        "webhooks.webhookdelivery": [
            {
                "status__exact": "delivered",
                "events_id": "jobs.create",
                "handoff__exact": "0",
                **window,
                "last_attempt_from": "2020-01-01",
                "last_attempt_to": "2100-01-01",
            },
            {"company__id__exact": company},
            Single({"q": str(getattr(first, "object_id", ""))}),
        ],
        "reports.report": [
            {"status__exact": "ready"},
            Single({"q": getattr(getattr(first, "job", None), "code", "")}),
        ],
        "auth.user": [
            {
                "is_staff__exact": "1",
                "is_superuser__exact": "0",
                "is_active__exact": "1",
                "groups__id__exact": str(
                    Group.objects.order_by("pk").values_list("pk", flat=True).first()
                ),
                "q": "acme",
            }
        ],
        "auth.group": [{"q": "acme"}],
        "django_celery_beat.periodictask": [
            {
                "enabled__exact": "1",
                "one_off__exact": "0",
                "task": "webhooks.dispatch_due_deliveries",
                "start_time__gte": SINCE,
                "last_run_at__gte": SINCE,
                "q": "acme",
            }
        ],
        "axes.accessattempt": [
            {"attempt_time__gte": SINCE, "path_info": "/api/v1/token/", "q": "acme"},
            {"locked_out": "yes"},
        ],
        "axes.accesslog": [
            {
                "attempt_time__gte": SINCE,
                "logout_time__gte": SINCE,
                "path_info": "/api/v1/token/",
                "q": "acme",
            }
        ],
        "axes.accessfailurelog": [
            {
                "attempt_time__gte": SINCE,
                "locked_out__exact": "1",
                "path_info": "/api/v1/token/",
                "q": "acme",
            }
        ],
    }
    return queries.get(label, [{"q": "acme"}])


@pytest.mark.parametrize("label", registered())
def test_every_list_filter_and_search_run_as_many_queries_for_many_rows(
    label: str, world: World, staff: Client
) -> None:
    build = ROW_BUILDERS[label]
    changelist = reverse(urls(label)[0])
    first = build(world, 0)
    for i in range(1, FILTER_FEW):
        build(world, i)
    queries = [
        (q.params, True) if isinstance(q, Single) else (q, False)
        for q in filter_queries(label, first)
    ]

    response = staff.get(changelist)
    specs = response.context["cl"].filter_specs
    applied = {name for query, _ in queries for name in query}
    for spec in specs:
        assert set(spec.expected_parameters()) & applied, f"{label}: {spec.title} not applied"
    model_admin = admin.site._registry[type(first)]
    if model_admin.search_fields:
        assert any("q" in query for query, _ in queries), f"{label}: no search term"

    few = [run(staff, changelist, query) for query, _ in queries]
    for i in range(FILTER_FEW, FILTER_MANY):
        build(world, i)
    many = [run(staff, changelist, query) for query, _ in queries]

    for (query, single), one, more in zip(queries, few, many, strict=True):
        assert one.listed, f"{label} {query}: nothing listed; the query proves nothing"
        if single:
            assert one.listed == more.listed == 1, (label, query)
        else:
            assert more.listed is not None and more.listed > one.listed, (label, query)
        assert_same_count(one, more, f"the {label} list filtered by {query}")


# --- pages with related rows: 1 against 20 ------------------------------------------------------


@pytest.fixture
def endpoints_allowed(settings: Any) -> None:
    settings.JOBTRAIL_MAX_WEBHOOK_ENDPOINTS = MANY + 5


def other_staff(n: int) -> Any:
    return UserFactory(username=f"support-{n}", is_staff=True, is_superuser=True)


def log_on(obj: models.Model, user: Any, text: str) -> None:
    """What a staff action records on the object's history (the admin log)."""
    LogEntry.objects.log_actions(user.pk, [obj], CHANGE, change_message=text, single_object=True)


def test_job_page_fragment_and_history_for_many_related_rows_as_for_one(
    world: World, staff: Client, endpoints_allowed: None
) -> None:
    """Events, push results, deliveries (to different endpoints), attempts and history."""
    company = CompanyFactory(name="Acme pages")
    endpoint_create(company=company, url=world.url(0), events=["*"])
    job = JobFactory(company=company)  # one event, one delivery, one attempt
    world.send(job)
    log_on(job, other_staff(0), "Rebuild report: queued.")
    pages = [
        reverse("admin:jobs_job_change", args=[job.pk]),
        reverse("admin:jobs_job_live", args=[job.pk]),
        reverse("admin:jobs_job_history", args=[job.pk]),
    ]
    few = [run(staff, page) for page in pages]

    for k in range(1, 4):  # more endpoints: each event goes to each of them
        endpoint_create(company=company, url=world.url(k) + "/more", events=["jobs.*"])
    services.job_start(job_id=job.pk)
    for n in range(1, MANY):
        services.job_record_progress(job_id=job.pk, effected_records=n, message=f"step {n}")
        services.push_result_record(
            job_id=job.pk,
            data=services.PushResultData(
                push_communication_id=f"pc-{n}",
                status="failed" if n % 2 else "success",
                validation_errors=[{"field": "ref", "message": "x"}] if n % 2 else [],
            ),
        )
        log_on(job, other_staff(n), f"Redeliver {n}")
    world.send(job)
    assert job.events.count() > MANY and job.push_results.count() == MANY - 1
    assert WebhookDelivery.objects.filter(object_id=str(job.pk)).count() > MANY
    assert WebhookAttempt.objects.filter(delivery__object_id=str(job.pk)).count() > MANY
    many = [run(staff, page) for page in pages]

    for page, one, more in zip(pages, few, many, strict=True):
        assert_same_count(one, more, page)


def test_delivery_page_for_many_attempts_as_for_one(world: World, staff: Client) -> None:
    company = CompanyFactory(name="Acme attempts")
    endpoint_create(company=company, url=world.url(2), events=["jobs.create"])  # port 9
    job = JobFactory(company=company)
    world.send(job)
    delivery = WebhookDelivery.objects.get(object_id=str(job.pk))
    assert delivery.attempts == 1
    log_on(delivery, other_staff(0), "Redeliver")
    pages = [
        reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
        reverse("admin:webhooks_webhookdelivery_history", args=[delivery.pk]),
    ]
    few = [run(staff, page) for page in pages]

    for number in range(2, MANY + 1):
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            trigger=("scheduled", "manual")[number % 2],
            started_at=timezone.now(),
            duration_ms=number,
            status_code=(None, 200, 503, 302)[number % 4],
            error="" if number % 4 else "connection refused",
            url=f"{world.url(number)}/attempt",
            request_headers={"webhook-id": f"msg_{number}"},
            response_headers={"content-type": "text/plain"} if number % 4 else {},
        )
        log_on(delivery, other_staff(number), f"Redeliver {number}")
    many = [run(staff, page) for page in pages]

    assert WebhookAttempt.objects.filter(delivery=delivery).count() == MANY
    for page, one, more in zip(pages, few, many, strict=True):
        assert_same_count(one, more, page)


def test_endpoint_page_for_many_deliveries_as_for_one(world: World, staff: Client) -> None:
    company = CompanyFactory(name="Acme endpoint page")
    endpoint = endpoint_create(company=company, url=world.url(0), events=["jobs.create"])
    world.send(JobFactory(company=company))
    page = reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
    few = run(staff, page)
    for n in range(1, MANY):
        world.send(JobFactory(company=company, type=f"type-{n}"))
    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == MANY
    assert_same_count(few, run(staff, page), "an endpoint's page")


def test_company_page_for_many_members_and_endpoints_as_for_one(
    world: World, staff: Client, endpoints_allowed: None
) -> None:
    company = CompanyFactory(name="Acme members")
    ApiClientFactory(company=company)
    endpoint_create(company=company, url=world.url(0), events=["*"])
    page = reverse("admin:jobs_company_change", args=[company.pk])
    few = run(staff, page)
    for n in range(1, MANY):
        ApiClientFactory(company=company, username=f"acme-client-{n}")
        endpoint_create(company=company, url=f"{world.url(n)}/{n}", events=["jobs.*"])
    assert company.members.count() == MANY
    assert_same_count(few, run(staff, page), "a company's page")

    html = staff.get(page).content.decode()
    for member in company.members.select_related("user"):  # each row shows its own user
        assert f'<option value="{member.user_id}" selected>{member.user}</option>' in html


def test_a_member_added_on_the_company_page_is_saved(staff: Client) -> None:
    """The members' autocomplete still saves (its labels come from the rows read with it)."""
    company = CompanyFactory(name="Acme saved")
    existing = ApiClientFactory(company=company)
    newcomer = UserFactory(username="acme-newcomer")
    member = company.members.get()
    page = reverse("admin:jobs_company_change", args=[company.pk])
    prefix = "members"
    response = staff.post(
        page,
        {
            "name": "Acme saved",
            f"{prefix}-TOTAL_FORMS": "2",
            f"{prefix}-INITIAL_FORMS": "1",
            f"{prefix}-0-id": str(member.pk),
            f"{prefix}-0-company": str(company.pk),
            f"{prefix}-0-user": str(existing.pk),
            f"{prefix}-1-company": str(company.pk),
            f"{prefix}-1-user": str(newcomer.pk),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert set(company.members.values_list("user_id", flat=True)) == {existing.pk, newcomer.pk}


@pytest.mark.parametrize(
    "label",
    [
        "django_celery_beat.intervalschedule",
        "django_celery_beat.crontabschedule",
        "django_celery_beat.solarschedule",
        "django_celery_beat.clockedschedule",
    ],
)
def test_schedule_pages_for_many_periodic_tasks_as_for_one(
    label: str, world: World, staff: Client
) -> None:
    schedule = ROW_BUILDERS[label](world, 0)  # with two periodic tasks (its inline)
    field_name = label.split(".")[1].removesuffix("schedule")
    page = reverse(urls(label)[1], args=[schedule.pk])
    few = run(staff, page)
    for n in range(1, MANY // 2):
        _with_tasks(schedule, field_name, 100 + n)
    assert PeriodicTask.objects.filter(**{field_name: schedule}).count() >= MANY
    assert_same_count(few, run(staff, page), f"the page of one {label}")


def test_user_and_group_pages_for_many_groups_and_permissions_as_for_one(
    world: World, staff: Client
) -> None:
    user = UserFactory(username="acme-support", is_staff=True)
    group = Group.objects.create(name="acme support")
    user.groups.add(group)
    permissions = list(Permission.objects.order_by("pk")[: MANY + 1])
    user.user_permissions.add(permissions[0])
    group.permissions.add(permissions[0])
    pages = [
        reverse("admin:auth_user_change", args=[user.pk]),
        reverse("admin:auth_group_change", args=[group.pk]),
    ]
    few = [run(staff, page) for page in pages]
    for n in range(1, MANY):
        user.groups.add(Group.objects.create(name=f"acme support {n}"))
    user.user_permissions.add(*permissions[1:])
    group.permissions.add(*permissions[1:])
    many = [run(staff, page) for page in pages]
    for page, one, more in zip(pages, few, many, strict=True):
        assert_same_count(one, more, page)


# --- the console's own pages -------------------------------------------------------------------


def test_dashboard_and_time_zone_pages_for_many_rows_as_for_one(
    world: World, staff: Client
) -> None:
    pages = [
        (reverse("admin:index"), {}),
        (reverse("admin:index"), {"window": "7d"}),
        (reverse("admin:dashboard_live"), {"window": "30d"}),
        (reverse("admin:time_zone"), {}),
    ]

    def add(i: int) -> None:
        job = world.job(i)  # and the staff user's recent actions on it and its deliveries
        log_on(job, world.staff_user, f"Rebuild report {i}")
        for delivery in WebhookDelivery.objects.filter(object_id=str(job.pk))[:2]:
            log_on(delivery, world.staff_user, f"Redeliver {i}")

    for i in range(len(STATUS_CYCLE)):
        add(i)
    few = [run(staff, url, params) for url, params in pages]
    for i in range(len(STATUS_CYCLE), 4 * len(STATUS_CYCLE)):
        add(i)
    many = [run(staff, url, params) for url, params in pages]
    for (url, params), one, more in zip(pages, few, many, strict=True):
        assert_same_count(one, more, f"{url} {params}")
    assert 'class="actionlist"' in staff.get(reverse("admin:index")).content.decode()


def confirm(client: Client, url: str, data: dict[str, Any]) -> Run:
    """An action's confirmation page (POSTed from the list, not confirmed yet)."""
    with CaptureQueriesContext(connection) as captured:
        response = client.post(url, data)
    assert response.status_code == 200, response.status_code
    return Run(url, [q["sql"] for q in captured.captured_queries], None, response.content.decode())


def test_cancel_confirmation_for_twenty_jobs_as_for_one(world: World, staff: Client) -> None:
    url = reverse("admin:jobs_job_changelist")
    jobs = [world.job(6 * i + (0, 1)[i % 2]) for i in range(MANY)]  # pending or processing

    def page(selected: list[Job]) -> Run:
        data = {"action": "cancel_selected", "_selected_action": [str(j.pk) for j in selected]}
        return confirm(staff, url, data)

    page(jobs[:1])  # warm
    one, many = page(jobs[:1]), page(jobs)
    assert_same_count(one, many, "the cancel confirmation")
    assert all(job.code in many.html for job in jobs)  # each selected job is listed
    assert {Job.objects.get(pk=j.pk).status for j in jobs} <= {"pending", "processing"}
    single = reverse("admin:jobs_job_cancel", args=[jobs[0].pk])
    run(staff, single)  # the job page's Cancel button: one job, nothing to compare


def test_redeliver_failed_since_form_for_twenty_endpoints_as_for_one(
    world: World, staff: Client
) -> None:
    url = reverse("admin:webhooks_webhookendpoint_changelist")
    endpoints = [add_endpoint(world, i) for i in range(MANY)]

    def page(selected: list[WebhookEndpoint]) -> Run:
        data = {
            "action": "redeliver_failed_since",
            "_selected_action": [str(e.pk) for e in selected],
        }
        return confirm(staff, url, data)

    page(endpoints[:1])
    one, many = page(endpoints[:1]), page(endpoints)
    assert_same_count(one, many, "the redeliver-failed-since form")
    assert all(f"{e.url} ({e.company})" in many.html for e in endpoints)


def test_autocompletes_for_twenty_matches_as_for_one(staff: Client) -> None:
    """The company filter's and the members' user autocomplete (JSON for the widgets)."""
    url = reverse("admin:autocomplete")
    lookups = [
        {"app_label": "jobs", "model_name": "job", "field_name": "company", "term": "acme"},
        {"app_label": "jobs", "model_name": "companymember", "field_name": "user", "term": "acme"},
    ]
    CompanyFactory(name="Acme auto 0")
    UserFactory(username="acme-auto-0")
    few = [run(staff, url, params) for params in lookups]
    for n in range(1, MANY):
        CompanyFactory(name=f"Acme auto {n}")
        UserFactory(username=f"acme-auto-{n}")
    many = [run(staff, url, params) for params in lookups]
    for params, one, more in zip(lookups, few, many, strict=True):
        assert_same_count(one, more, f"the autocomplete {params}")
    results = staff.get(url, lookups[0]).json()["results"]
    assert len(results) == MANY
