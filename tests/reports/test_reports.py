"""CSV reports: content, streaming memory, signed links, API, tenancy."""

import csv
import io
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from jobs import services as jobs
from jobs.models import Job, JobStatus, PushResult
from reports import services
from reports.models import Report
from tests.factories import job_in_status
from tests.relay import run_relay
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

HEADER = (
    "push_communication_id,status,response_code,data_type,service_name,source_object_ids,"
    "requested_on,completed_on,validation_errors"
)
TRICKY = [
    {"field": "currencyRef", "message": 'Multi "Currency", should be enabled'},
    {"field": "memo", "message": "line one\nline two, with comma"},
    {"field": "name", "message": "Ünïcødé ✓ 日本語 — émoji 🚀"},
]


def _push(job: Job, n: int, *, failed: bool = False, errors: list | None = None) -> None:
    jobs.push_result_record(
        job_id=job.pk,
        data=jobs.PushResultData(
            push_communication_id=f"push-{n}",
            status="failed" if failed else "success",
            response_code=400 if failed else 200,
            data_type="invoices",
            service_name="quickbooks",
            source_object_ids=[str(n), f"{n}b"] if not failed else [],
            requested_on=datetime(2021, 3, 9, 19, 56, 3, 952000, tzinfo=UTC),
            completed_on=datetime(2021, 3, 9, 19, 56, 4, tzinfo=UTC),
            validation_errors=errors or [],
        ),
    )


def _read(report: Report) -> list[list[str]]:
    with report.file.open("rb") as f:
        return list(csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline="")))


def _finished_job_with_pushes(**kwargs) -> Job:
    job = job_in_status(JobStatus.PROCESSING, **kwargs)
    _push(job, 1)
    _push(job, 2, failed=True, errors=TRICKY)
    jobs.job_complete_with_errors(job_id=job.pk)
    run_relay()
    return job


def test_finishing_a_job_requests_its_report(django_capture_on_commit_callbacks) -> None:
    job = job_in_status(JobStatus.PROCESSING)
    event = jobs.job_complete(job_id=job.pk)
    # the change itself writes no report row; its answer already says pending
    assert not Report.objects.filter(job=job).exists()
    assert services.report_state(None, job=event.job) == {"status": "pending", "url": None}
    with django_capture_on_commit_callbacks() as callbacks:
        run_relay()  # the relay requests the build
    assert Report.objects.get(job=job).status == "pending"
    # what it publishes after its commit (its other callback counts the change in the metrics)
    published = [c.key for c in callbacks if hasattr(c, "key")]
    assert published == [("reports.build_job_report", (str(job.pk),))]


@pytest.mark.parametrize("terminal", ["failed"])
def test_failed_jobs_get_no_report(terminal: str) -> None:
    job = job_in_status(JobStatus.FAILED)
    assert not Report.objects.filter(job=job).exists()


def test_report_content_and_escaping() -> None:
    job = _finished_job_with_pushes()
    report = services.report_build(job_id=job.pk)
    assert report is not None and report.status == "ready"
    rows = _read(report)
    assert ",".join(rows[0]) == HEADER
    assert rows[1] == [
        "push-1",
        "success",
        "200",
        "invoices",
        "quickbooks",
        "1;1b",
        "2021-03-09T19:56:03.952000Z",
        "2021-03-09T19:56:04Z",
        "",
    ]
    assert rows[2][:3] == ["push-2", "failed", "400"]
    assert rows[2][8] == (
        'currencyRef: Multi "Currency", should be enabled | '
        "memo: line one\nline two, with comma | "
        "name: Ünïcødé ✓ 日本語 — émoji 🚀"
    )
    assert report.row_count == 2
    assert report.size_bytes == report.file.size
    with report.file.open("rb") as f:
        raw = f.read().decode("utf-8")
    assert '"memo: line one\nline two, with comma' not in raw.split("\n")[0]
    assert '""Currency""' in raw  # quotes doubled, field quoted


def test_report_ready_fires_its_webhook() -> None:
    job = _finished_job_with_pushes()
    endpoint_create(company=job.company, url="http://127.0.0.1:9/", events=["jobs.report.ready"])
    services.report_build(job_id=job.pk)
    assert not WebhookDelivery.objects.filter(events_id="jobs.report.ready").exists()
    run_relay()
    [delivery] = WebhookDelivery.objects.filter(events_id="jobs.report.ready")
    report = delivery.payload["data"]["report"]
    assert report["status"] == "ready"
    assert report["url"].startswith("http://127.0.0.1:8000/reports/download/")
    assert report["rows"] == 2


def test_hundred_thousand_rows_stream_in_flat_memory() -> None:
    job = job_in_status(JobStatus.PROCESSING)
    tricky = {1: TRICKY, 50_000: TRICKY, 99_999: [{"field": "x", "message": 'a,"b"\nc'}]}
    PushResult.objects.bulk_create(
        (
            PushResult(
                job=job,
                push_communication_id=f"{n:024x}",
                status="failed" if n in tricky else "success",
                response_code=400 if n in tricky else 200,
                data_type="invoices",
                service_name="xero",
                source_object_ids=[str(n)],
                validation_errors=tricky.get(n, []),
            )
            for n in range(100_000)
        ),
        batch_size=5000,
    )
    jobs.job_complete(job_id=job.pk)
    run_relay()

    tracemalloc.start()
    try:
        report = services.report_build(job_id=job.pk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert report is not None
    rows = _read(report)
    assert len(rows) == 100_001
    assert ",".join(rows[0]) == HEADER
    assert rows[1 + 50_000][8] == " | ".join(f"{e['field']}: {e['message']}" for e in TRICKY)
    assert rows[1 + 99_999][8] == 'x: a,"b"\nc'
    assert report.row_count == 100_000
    # 100,000 rows are tens of MB as Python objects; streaming in chunks stays far below.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.postgres
def test_postgresql_writes_the_same_csv_as_the_portable_writer() -> None:
    """The COPY path (PostgreSQL formats the cells) and csv.writer agree byte for byte."""
    job = job_in_status(JobStatus.PROCESSING)
    moment = datetime(2021, 3, 9, 19, 56, 3, 952000, tzinfo=UTC)
    cases = [
        # (source ids, requested, completed, response code, validation errors, data type)
        ([], None, None, None, [], ""),
        (["only"], moment, moment.replace(microsecond=0), 200, [], "invoices"),
        (["1", "1b", "x;y"], moment.replace(microsecond=1), moment, 400, TRICKY, "a,b"),
        ([7, "mixed"], datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), None, 599, ["bare"], 'q"uote'),
        ([42], moment, None, 100, [{"field": "", "message": ""}, {"message": "no field"}], " "),
        # formula triggers: a leading apostrophe on both paths (reports.cells)
        (["=1+1"], None, None, None, [{"field": "-x", "message": "@y"}], "=HYPERLINK(1)"),
        (["a", "b"], None, None, None, ["\tbare", "+1"], "@sum"),
        # each of several ids: ';' is the list separator in some locales' spreadsheets
        (["a", "=1+2", -3, "@x", "b=c"], None, None, None, [], "ids"),
        (["+1", "\r2"], None, None, None, [], "ids"),
        (["x;=1"], None, None, None, [{"field": "a;-b", "message": "c;@d"}], "e;\tf;g"),
    ]

    PushResult.objects.bulk_create(
        PushResult(
            job=job,
            push_communication_id=f'push-{n} "id", {n}',
            status="failed" if errors else "success",
            response_code=code,
            data_type=data_type,
            service_name="Ünïcødé ✓",
            source_object_ids=ids,
            requested_on=requested,
            completed_on=completed,
            validation_errors=errors,
        )
        for n, (ids, requested, completed, code, errors, data_type) in enumerate(cases)
    )
    copied = io.StringIO()
    assert services.write_report_csv(job_id=job.pk, out=copied) == len(cases)
    portable = io.StringIO()
    writer = services.portable_writer(portable)
    writer.writerow(services.HEADER)
    assert services._write_portable(job.pk, writer) == len(cases)
    assert copied.getvalue() == portable.getvalue()
    rows = list(csv.reader(io.StringIO(copied.getvalue())))
    assert rows[2][5:8] == ["only", "2021-03-09T19:56:03.952000Z", "2021-03-09T19:56:03Z"]
    assert rows[4][5:7] == ["7;mixed", "0999-01-02T03:04:05Z"]
    assert rows[5][8] == ":  | : no field"
    assert (rows[6][3], rows[6][5], rows[6][8]) == ("'=HYPERLINK(1)", "'=1+1", "'-x: @y")


def test_a_report_builds_in_the_same_statements_whatever_its_rows() -> None:
    counts = []
    for pushes in (1, 40):
        job = job_in_status(JobStatus.PROCESSING)
        for n in range(pushes):
            _push(job, n)
        jobs.job_complete(job_id=job.pk)
        run_relay()
        with CaptureQueriesContext(connection) as queries:
            report = services.report_build(job_id=job.pk)
        assert report is not None and report.row_count == pushes
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


# --- links and the API ------------------------------------------------------------------------


@pytest.fixture
def ready_job(company) -> Job:
    job = _finished_job_with_pushes(company=company)
    services.report_build(job_id=job.pk)
    return job


def test_report_endpoint_409_until_ready(api: APIClient, company) -> None:
    job = job_in_status(JobStatus.PROCESSING, company=company)
    response = api.get(f"/api/v1/jobs/{job.pk}/report/")
    assert response.status_code == 409
    assert response.json()["code"] == "report_not_ready"
    jobs.job_complete(job_id=job.pk)
    pending = api.get(f"/api/v1/jobs/{job.pk}/report/")
    assert pending.status_code == 409 and "pending" in pending.json()["detail"]
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["report"] == {"status": "pending", "url": None}


def test_report_link_works(api: APIClient, ready_job: Job) -> None:
    response = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")
    assert response.status_code == 302
    link = response["Location"]
    assert link.startswith("http://127.0.0.1:8000/reports/download/")
    assert api.get(f"/api/v1/jobs/{ready_job.pk}/").json()["report"]["status"] == "ready"

    download = APIClient().get(link.removeprefix("http://127.0.0.1:8000"))  # no token needed
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{ready_job.code}-report.csv"' in download["Content-Disposition"]
    body = b"".join(download.streaming_content).decode()
    assert body.splitlines()[0] == HEADER

    mine = api.get(link.removeprefix("http://127.0.0.1:8000"))
    assert mine.status_code == 200


def test_report_link_rejects_tampering(api: APIClient, ready_job: Job) -> None:
    path = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"].removeprefix(
        "http://127.0.0.1:8000"
    )
    token = path.split("/")[-2]
    for bad in [token[:-1] + ("A" if token[-1] != "A" else "B"), token[5:], "x" + token, "nope"]:
        response = APIClient().get(f"/reports/download/{bad}/")
        assert response.status_code == 404, bad
        assert response["Content-Type"] == "application/problem+json"


def test_report_link_expires(api: APIClient, ready_job: Job, monkeypatch, settings) -> None:
    settings.JOBTRAIL_REPORT_LINK_TTL = 60
    path = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"].removeprefix(
        "http://127.0.0.1:8000"
    )
    assert APIClient().get(path).status_code == 200
    real = time.time
    monkeypatch.setattr("django.core.signing.time.time", lambda: real() + 61)
    expired = APIClient().get(path)
    assert expired.status_code == 410
    assert expired.json()["code"] == "link_expired"


def test_the_report_ready_webhooks_link_lives_as_long_as_its_retries(
    company, monkeypatch, settings
) -> None:
    """Signed when the report is built and kept in the delivery, the link must still work on
    the webhook's last retry (~27.6 h by default), not only for an API answer's hour."""
    settings.JOBTRAIL_REPORT_LINK_TTL = 60
    job = _finished_job_with_pushes(company=company)
    endpoint_create(company=company, url="http://127.0.0.1:9/", events=["jobs.report.ready"])
    services.report_build(job_id=job.pk)
    run_relay()
    delivery = WebhookDelivery.objects.get(events_id="jobs.report.ready")
    path = delivery.payload["data"]["report"]["url"].removeprefix("http://127.0.0.1:8000")
    retries = sum(settings.JOBTRAIL_WEBHOOK_RETRY_SCHEDULE)
    real = time.time

    monkeypatch.setattr("django.core.signing.time.time", lambda: real() + retries)
    assert APIClient().get(path).status_code == 200  # the last retry's time
    monkeypatch.setattr("django.core.signing.time.time", lambda: real() + retries + 3601)
    assert APIClient().get(path).status_code == 410


def test_report_link_and_endpoint_reject_other_tenants(
    api: APIClient, other_api: APIClient, ready_job: Job
) -> None:
    path = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"].removeprefix(
        "http://127.0.0.1:8000"
    )
    assert other_api.get(path).status_code == 404
    assert other_api.get(f"/api/v1/jobs/{ready_job.pk}/report/").status_code == 404


def test_rebuilding_invalidates_old_links(api: APIClient, ready_job: Job) -> None:
    old = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"]
    services.report_rebuild(job=ready_job)
    services.report_build(job_id=ready_job.pk)
    assert APIClient().get(old.removeprefix("http://127.0.0.1:8000")).status_code == 404
    new = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"]
    assert APIClient().get(new.removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_seed_002_file_path_is_the_signed_link(api: APIClient, ready_job: Job) -> None:
    body = api.post(
        "/services/rest/v1/export/job/status", {"jobCode": ready_job.code}, format="json"
    ).json()
    assert body["status"] == "SUCCESSFUL"
    assert body["filePath"].startswith("http://127.0.0.1:8000/reports/download/")
    assert (
        APIClient().get(body["filePath"].removeprefix("http://127.0.0.1:8000")).status_code == 200
    )


def test_lost_builds_are_queued_again(monkeypatch) -> None:
    job = job_in_status(JobStatus.COMPLETED)
    Report.objects.filter(job=job).update(updated_at=timezone.now() - timezone.timedelta(minutes=5))
    queued: list[str] = []
    monkeypatch.setattr(
        "reports.tasks.build_job_report.apply_async", lambda args, **kw: queued.append(args[0])
    )
    assert services.reports_queue_pending() == 1
    assert queued == [str(job.pk)]


def test_a_last_try_that_could_not_claim_the_report_leaves_it_for_the_sweep(monkeypatch) -> None:
    """The task's last try fails before it holds the report (the database away at the claim):
    nothing says the report itself cannot be built, so it stays pending and the sweep queues
    it again, instead of being marked failed without an attempt."""
    from django.db import OperationalError

    from reports.tasks import build_job_report

    job = job_in_status(JobStatus.COMPLETED)

    def database_away(**kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("connection refused")

    monkeypatch.setattr(services.leases, "claim", database_away)
    build_job_report.apply(args=(str(job.pk),), retries=3)
    report = Report.objects.get(job=job)
    assert (report.status, report.error) == ("pending", "")


def test_a_build_whose_storage_fails_is_retried_and_then_marked_failed(monkeypatch) -> None:
    """The real build claims the report; failing, it gives the claim back, so each retry builds
    again (held, a retry found nothing to build, "succeeded", and the report stayed pending
    for ever), and after the last one the report is failed."""
    from django.core.files.storage import FileSystemStorage

    from reports.tasks import build_job_report

    job = job_in_status(JobStatus.COMPLETED)
    tries: list[str] = []

    def full(self, name, content, max_length=None):  # type: ignore[no-untyped-def]
        tries.append(name)
        raise OSError("storage is full")

    monkeypatch.setattr(FileSystemStorage, "save", full)
    for retries in range(4):  # the first run and the task's three retries
        build_job_report.apply(args=(str(job.pk),), retries=retries)

    assert len(tries) == 4
    report = Report.objects.get(job=job)
    assert report.status == "failed" and "storage is full" in report.error


def test_the_last_failure_of_an_outdated_build_task_leaves_a_newer_build_alone(
    monkeypatch,
) -> None:
    """The task's last try fails while another worker builds a newer request's report: the
    report stays as that build left it (it was marked failed and its links died)."""
    from reports.tasks import build_job_report

    job = _finished_job_with_pushes()
    real_write = services.write_report_csv

    def newer_build_then_fail(*, job_id, out):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(services, "write_report_csv", real_write)
        services.report_rebuild(job=job)  # a newer request...
        assert services.report_build(job_id=job.pk) is not None  # ...built by another worker
        raise OSError("storage hiccup")

    monkeypatch.setattr(services, "write_report_csv", newer_build_then_fail)
    build_job_report.apply(args=(str(job.pk),), retries=3)  # its last try

    report = Report.objects.get(job=job)
    assert (report.status, report.error, report.row_count) == ("ready", "", 2)


def test_the_last_failure_of_a_build_task_leaves_a_request_made_during_it_pending(
    monkeypatch,
) -> None:
    """A newer request arrives while the last try runs and fails: the report stays pending for
    that request's build (it was marked failed, and that build found nothing to build)."""
    from reports.tasks import build_job_report

    job = _finished_job_with_pushes()

    def newer_request_then_fail(*, job_id, out):  # type: ignore[no-untyped-def]
        services.report_rebuild(job=job)
        raise OSError("storage hiccup")

    monkeypatch.setattr(services, "write_report_csv", newer_request_then_fail)
    build_job_report.apply(args=(str(job.pk),), retries=3)  # its last try

    report = Report.objects.get(job=job)
    assert (report.status, report.error, report.locked_until) == ("pending", "", None)
    monkeypatch.undo()
    assert services.report_build(job_id=job.pk) is not None  # the newer request's build


def test_the_last_failure_of_a_build_task_still_fails_its_report(monkeypatch) -> None:
    """No newer request: the failure is the report's (the fence lets it through)."""
    from reports.tasks import build_job_report

    job = _finished_job_with_pushes()

    def storage_hiccup(*, job_id, out):  # type: ignore[no-untyped-def]
        raise OSError("storage hiccup")

    monkeypatch.setattr(services, "write_report_csv", storage_hiccup)
    build_job_report.apply(args=(str(job.pk),), retries=3)

    report = Report.objects.get(job=job)
    assert (report.status, report.error) == ("failed", "OSError: storage hiccup")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_build_whose_connection_died_gives_its_claim_back(monkeypatch) -> None:
    """PostgreSQL drops the build's connection in the middle of its COPY (a restart, a
    failover): the claim is given back on a new connection, so the task's retry builds at once
    (the release failed on the dead one, and the report stayed pending for the lease, minutes)."""
    from tests.pg import backend_terminator

    job = _finished_job_with_pushes()
    real_write = services.write_report_csv
    terminate = backend_terminator()

    def connection_dies(*, job_id, out):  # type: ignore[no-untyped-def]
        connection.ensure_connection()
        terminate(connection.connection.info.backend_pid)
        return real_write(job_id=job_id, out=out)  # COPY on the raw connection: it fails

    monkeypatch.setattr(services, "write_report_csv", connection_dies)
    with pytest.raises(Exception, match=r"(?i)connection|terminat|closed"):
        services.report_build(job_id=job.pk)

    report = Report.objects.get(job=job)
    assert (report.status, report.locked_until) == ("pending", None)  # free for the retry
    monkeypatch.setattr(services, "write_report_csv", real_write)
    rebuilt = services.report_build(job_id=job.pk)
    assert rebuilt is not None and rebuilt.status == "ready"


class DatabaseAway:
    """Replaces functions with ones that raise OperationalError on the calls numbered in
    ``down`` (from 1) and run the real function otherwise; counts the calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: dict[str, int] = {}

    def on(self, owner: Any, name: str, *down: int) -> None:
        from django.db import OperationalError

        real = getattr(owner, name)
        self.calls[name] = 0

        def maybe_down(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.calls[name] in down:
                raise OperationalError("the database system is starting up")
            return real(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, maybe_down)


@pytest.mark.django_db(transaction=True)
def test_a_build_that_could_not_give_its_claim_back_hands_it_to_its_retry(monkeypatch) -> None:
    """PostgreSQL restarted during the build: the build failed and so did both tries to give
    its claim back. The task's retry, 30 s later, found the report held (its lease: the task
    time limit and a minute) and ended as done, its retries used up: the report stayed pending
    for about six minutes, until the lease ended and the sweep queued it again. The retry takes
    over the claim it is handed."""
    from config import leases
    from reports.tasks import build_job_report

    job = _finished_job_with_pushes()
    away = DatabaseAway(monkeypatch)
    away.on(services, "write_report_csv", 1)
    away.on(leases, "release", 1, 2)  # the give-back and its try on a new connection

    build_job_report.apply(args=(str(job.pk),))  # its retry runs at once (eager)

    report = Report.objects.get(job=job)
    assert (report.status, report.locked_until) == ("ready", None)
    assert away.calls["write_report_csv"] == 2


@pytest.mark.django_db(transaction=True)
def test_the_kept_claim_is_handed_on_past_a_retry_that_could_not_reach_the_database(
    monkeypatch,
) -> None:
    """The first try keeps its claim (ClaimKept); the second cannot even claim (the database
    is still away). Its retry was handed nothing, found the report held and ended as done."""
    from config import leases
    from reports.tasks import build_job_report

    job = _finished_job_with_pushes()
    away = DatabaseAway(monkeypatch)
    away.on(services, "write_report_csv", 1)
    away.on(leases, "release", 1, 2)
    away.on(leases, "claim", 2)

    build_job_report.apply(args=(str(job.pk),))  # its retries run at once (eager)

    report = Report.objects.get(job=job)
    assert (report.status, report.locked_until) == ("ready", None)
    assert away.calls["claim"] == 3


@pytest.mark.django_db(transaction=True)
def test_a_build_that_fails_right_after_its_claim_gives_the_claim_back(monkeypatch) -> None:
    """The report's row and the push count were read after the claim but before the part
    that gives the claim back on failure: a connection lost there held the report for the
    lease (minutes), and the retry found nothing to build."""
    from django.db import OperationalError

    job = _finished_job_with_pushes()
    real_count = services.pushes_recorded

    def count_once_down(job):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(services, "pushes_recorded", real_count)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "pushes_recorded", count_once_down)
    with pytest.raises(OperationalError):
        services.report_build(job_id=job.pk)

    report = Report.objects.get(job=job)
    assert (report.status, report.locked_until) == ("pending", None)  # free for the retry
    rebuilt = services.report_build(job_id=job.pk)
    assert rebuilt is not None and rebuilt.status == "ready"


def test_a_report_is_built_once_per_request() -> None:
    job = _finished_job_with_pushes()
    endpoint_create(company=job.company, url="http://127.0.0.1:9/", events=["jobs.report.ready"])
    first = services.report_build(job_id=job.pk)
    duplicate = services.report_build(job_id=job.pk)  # the same task delivered twice
    assert first is not None and duplicate is None
    run_relay()
    assert WebhookDelivery.objects.filter(events_id="jobs.report.ready").count() == 1


def test_a_build_superseded_by_a_newer_request_is_discarded(monkeypatch) -> None:
    """A request that arrives while a build runs wins: the running build's file is thrown away."""
    job = _finished_job_with_pushes()
    endpoint_create(company=job.company, url="http://127.0.0.1:9/", events=["jobs.report.ready"])
    real_write = services.write_report_csv

    def write_then_newer_request(*, job_id, out):  # type: ignore[no-untyped-def]
        rows = real_write(job_id=job_id, out=out)
        # meanwhile a late push result arrives and its job's report is requested again
        _push(job, 3)
        services.reports_request(job_ids=[job.pk])
        return rows

    monkeypatch.setattr(services, "write_report_csv", write_then_newer_request)
    superseded = services.report_build(job_id=job.pk)

    assert superseded is None
    report = Report.objects.get(job=job)
    assert report.status == "pending" and not report.file  # the newer request still owns it
    assert report.locked_until is None
    storage = report.file.storage
    folder = f"reports/{timezone.now():%Y/%m}"
    assert not [f for f in storage.listdir(folder)[1] if str(job.pk) in f]  # its file deleted
    assert not job.events.filter(kind="report_ready").exists()

    monkeypatch.setattr(services, "write_report_csv", real_write)
    newer = services.report_build(job_id=job.pk)

    assert newer is not None and newer.status == "ready" and newer.row_count == 3
    assert [r[0] for r in _read(newer)[1:]] == ["push-1", "push-2", "push-3"]
    run_relay()
    assert WebhookDelivery.objects.filter(events_id="jobs.report.ready").count() == 1


def test_a_superseded_build_leaves_the_winning_build_s_file_on_a_storage_that_overwrites(
    settings, tmp_path, monkeypatch
) -> None:
    """django-storages' S3 storage overwrites a name it holds (AWS_S3_FILE_OVERWRITE): two
    builds of a job in one month shared a name, and the superseded one deleted it, leaving the
    ready report's link pointing at nothing."""
    settings.MEDIA_ROOT = str(tmp_path)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"allow_overwrite": True},
        },
    }
    job = _finished_job_with_pushes()
    real_mark_ready = services._mark_ready
    names: list[str] = []

    def newer_build_wins_meanwhile(report, until, **fields):  # type: ignore[no-untyped-def]
        names.append(fields["name"])
        if len(names) == 1:  # a late push result, and its rebuild runs to the end
            _push(job, 3)
            services.reports_request(job_ids=[job.pk])
            assert services.report_build(job_id=job.pk) is not None
        return real_mark_ready(report, until, **fields)

    monkeypatch.setattr(services, "_mark_ready", newer_build_wins_meanwhile)

    assert services.report_build(job_id=job.pk) is None  # superseded
    report = Report.objects.get(job=job)
    assert report.status == "ready" and report.row_count == 3
    assert report.file.name == names[1] != names[0]
    assert report.file.storage.exists(report.file.name)
    assert [r[0] for r in _read(report)[1:]] == ["push-1", "push-2", "push-3"]
    assert not report.file.storage.exists(names[0])  # the superseded build's own, deleted


def test_a_build_that_outlived_its_lease_may_be_taken_over() -> None:
    job = _finished_job_with_pushes()
    Report.objects.filter(job=job).update(locked_until=timezone.now() + timedelta(minutes=1))
    assert services.report_build(job_id=job.pk) is None  # a build within its lease runs alone
    Report.objects.filter(job=job).update(locked_until=timezone.now() - timedelta(seconds=1))
    # a build that outlived its lease: a new build may take over
    assert services.report_build(job_id=job.pk) is not None


def test_late_push_results_rebuild_the_report(api: APIClient, company) -> None:
    job = _finished_job_with_pushes(company=company)
    services.report_build(job_id=job.pk)
    _push(job, 3, failed=True, errors=[{"field": "late", "message": "arrived after completion"}])
    run_relay()
    assert Report.objects.get(job=job).status == "pending"
    report = services.report_build(job_id=job.pk)
    assert report is not None and report.row_count == 3
    assert _read(report)[3][0] == "push-3"


def test_a_late_push_result_makes_the_report_pending_at_once(api: APIClient, company) -> None:
    """From the commit of a late push result, before the relay asks for the rebuild, no answer
    hands out the old file as the job's report (it lacks that result)."""
    job = _finished_job_with_pushes(company=company)
    services.report_build(job_id=job.pk)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["report"]["status"] == "ready"

    _push(job, 3, failed=True, errors=[{"field": "late", "message": "arrived after completion"}])
    # not relayed yet: the report row still says ready

    assert Report.objects.get(job=job).status == "ready"
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["report"] == {
        "status": "pending",
        "url": None,
    }
    assert api.get(f"/api/v1/jobs/{job.pk}/report/").json()["code"] == "report_not_ready"
    polled = api.post("/services/rest/v1/export/job/status", {"jobCode": job.code}, format="json")
    assert (polled.json()["status"], polled.json()["filePath"]) == ("RUNNING", None)
    run_relay()
    services.report_build(job_id=job.pk)
    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["report"]["status"] == "ready"
    assert api.get(f"/api/v1/jobs/{job.pk}/report/").status_code == 302


def test_link_works_with_a_stale_token_and_answers_404_when_the_file_is_gone(
    api: APIClient, ready_job: Job
) -> None:
    path = api.get(f"/api/v1/jobs/{ready_job.pk}/report/")["Location"].removeprefix(
        "http://127.0.0.1:8000"
    )
    stale = APIClient()
    stale.credentials(HTTP_AUTHORIZATION="Bearer not-a-valid-token")
    assert stale.get(path).status_code == 200
    report = Report.objects.get(job=ready_job)
    report.file.storage.delete(report.file.name)
    gone = APIClient().get(path)
    assert gone.status_code == 404
    assert gone.json()["code"] == "report_file_missing"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_build_whose_connection_died_while_recording_it_gives_its_claim_back(
    monkeypatch,
) -> None:
    """The connection dies in the transaction that records the built file: the claim is given
    back (the retry builds again at once) and the file nobody recorded is deleted."""
    from tests.pg import backend_terminator

    job = _finished_job_with_pushes()
    real_payload = services._ready_payload
    terminate = backend_terminator()

    def connection_dies(job_, report):  # type: ignore[no-untyped-def]
        terminate(connection.connection.info.backend_pid)
        return real_payload(job_, report)

    monkeypatch.setattr(services, "_ready_payload", connection_dies)
    with pytest.raises(Exception, match=r"(?i)connection|terminat|closed"):
        services.report_build(job_id=job.pk)

    connection.close()  # as Celery does between tasks
    report = Report.objects.get(job=job)
    assert (report.status, report.locked_until, report.file.name) == ("pending", None, "")
    folder = f"reports/{timezone.now():%Y/%m}"
    assert not [f for f in report.file.storage.listdir(folder)[1] if str(job.pk) in f]
    monkeypatch.undo()
    assert services.report_build(job_id=job.pk) is not None
