"""Console v2 (issue 13), second part: the staff user's time zone, what an attempt sent and
received, and support's searches (metadata, external ids, deliveries by time and company)."""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, PushCorrelation, PushCorrelationKind, PushResult
from ops.models import StaffTimeZone
from tests.factories import CompanyFactory, JobFactory
from tests.receiver import Reply, running_receiver
from tests.relay import run_relay
from webhooks.models import WebhookAttempt, WebhookDelivery
from webhooks.sending import deliver
from webhooks.services import HEADER_VALUE_LIMIT, RESPONSE_HEADERS_LIMIT, endpoint_create

pytestmark = pytest.mark.django_db

JOBS = "/admin/jobs/job/"
DELIVERIES = "/admin/webhooks/webhookdelivery/"
MOMENT = datetime(2026, 11, 23, 7, 32, 5, tzinfo=UTC)


def _listed_codes(staff: Client, query: str) -> set[str]:
    response = staff.get(JOBS, {"q": query})
    assert response.status_code == 200
    return set(
        re.findall(r'<th class="field-code"><a [^>]*>([^<]+)</a>', response.content.decode())
    )


def _listed_deliveries(staff: Client, params: dict[str, str]) -> set[str]:
    response = staff.get(DELIVERIES, params)
    assert response.status_code == 200, response.content[:500]
    return set(re.findall(r'name="_selected_action" value="([^"]+)"', response.content.decode()))


def _set_zone(staff: Client, name: str) -> Any:
    return staff.post(reverse("admin:time_zone"), {"time_zone": name})


# --- the staff user's time zone ---------------------------------------------------------------


def test_times_are_utc_until_the_staff_user_chooses_a_zone(staff: Client, admin_user: Any) -> None:
    job = JobFactory(code="TZ-1")
    Job.objects.filter(pk=job.pk).update(created_at=MOMENT, last_activity_at=MOMENT)
    page = staff.get(JOBS).content.decode()
    assert ">2026-11-23 07:32:05 UTC</time>" in page
    assert 'id="time-zone-link"' in page and "Time zone: UTC" in page

    answer = _set_zone(staff, "Europe/Paris")

    assert answer.status_code == 302
    assert StaffTimeZone.objects.get(user=admin_user).time_zone == "Europe/Paris"
    page = staff.get(JOBS).content.decode()
    assert ">2026-11-23 08:32:05 CET (UTC+01:00)</time>" in page
    assert 'datetime="2026-11-23T08:32:05+01:00"' in page
    assert "Time zone: Europe/Paris" in page
    detail = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "2026-11-23 08:32:05 CET (UTC+01:00)" in detail
    assert "07:32:05 UTC" not in detail


def test_the_zone_is_the_users_own_and_shows_its_offset(
    staff: Client, django_user_model: Any
) -> None:
    other = django_user_model.objects.create_superuser("other", "o@example.com", "pw-123456789")
    other_client = Client()
    other_client.force_login(other)
    job = JobFactory(code="TZ-2")
    Job.objects.filter(pk=job.pk).update(created_at=MOMENT, last_activity_at=MOMENT)

    _set_zone(staff, "Asia/Kolkata")
    _set_zone(other_client, "America/Sao_Paulo")  # tzdata has no letters for it: "-03"

    assert ">2026-11-23 13:02:05 IST (UTC+05:30)</time>" in staff.get(JOBS).content.decode()
    assert ">2026-11-23 04:32:05 UTC-03:00</time>" in other_client.get(JOBS).content.decode()


def test_an_unknown_zone_is_refused_and_changes_nothing(staff: Client, admin_user: Any) -> None:
    _set_zone(staff, "Europe/Paris")
    for bad in ["Mars/Olympus", "../../etc/passwd", "utc+2", "Europe/Paris\x00"]:
        answer = _set_zone(staff, bad)
        assert answer.status_code == 400, bad
        assert "Select a valid choice" in answer.content.decode(), bad
    answer = _set_zone(staff, "")
    assert answer.status_code == 400
    assert "This field is required" in answer.content.decode()
    assert StaffTimeZone.objects.get(user=admin_user).time_zone == "Europe/Paris"


def test_the_api_stays_in_utc_whatever_the_staff_zone(staff: Client) -> None:
    from jobs.accounts import api_client_create

    _set_zone(staff, "Asia/Tokyo")
    company = CompanyFactory(name="Tz Co")
    api_client_create(company_name="Tz Co", username="tz-api", password="tz-pass-123456789")
    job = JobFactory(company=company)
    Job.objects.filter(pk=job.pk).update(created_at=MOMENT)
    token = staff.post(
        "/api/v1/auth/token/",
        {"username": "tz-api", "password": "tz-pass-123456789"},
        content_type="application/json",
    ).json()["access"]
    body = staff.get(f"/api/v1/jobs/{job.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert body["created_at"].startswith("2026-11-23T07:32:05")


def test_typed_filter_dates_are_read_in_the_staff_users_zone(staff: Client) -> None:
    early, late = JobFactory(code="EARLY"), JobFactory(code="LATE")
    # 23:30 UTC on the 22nd is 00:30 on the 23rd in Paris
    Job.objects.filter(pk=early.pk).update(created_at=datetime(2026, 11, 22, 22, 30, tzinfo=UTC))
    Job.objects.filter(pk=late.pk).update(created_at=datetime(2026, 11, 22, 23, 30, tzinfo=UTC))

    def created_from(day: str) -> set[str]:
        html = staff.get(JOBS, {"created_from": day}).content.decode()
        return set(re.findall(r'<th class="field-code"><a [^>]*>([^<]+)</a>', html))

    assert created_from("2026-11-23") == set()  # UTC: both on the 22nd
    _set_zone(staff, "Europe/Paris")
    assert created_from("2026-11-23") == {"LATE"}


# --- attempts: the URL, request headers (signature redacted), response headers ---------------


def _delivery_to(url: str) -> WebhookDelivery:
    company = CompanyFactory()
    endpoint_create(company=company, url=url, events=["jobs.create"])
    JobFactory(company=company)
    run_relay()
    return WebhookDelivery.objects.get(company=company)


def test_an_attempt_logs_its_url_request_headers_and_response_headers(staff: Client) -> None:
    with running_receiver() as receiver:
        receiver.default = Reply(
            202, body="queued", headers={"X-Request-Id": "rcv-42", "Retry-After": "5"}
        )
        delivery = _delivery_to(receiver.url + "/hooks/in?x=1")
        deliver(delivery.pk)
        [received] = receiver.requests
    attempt = WebhookAttempt.objects.get(delivery=delivery)

    assert attempt.url == receiver.url + "/hooks/in?x=1"
    sent = attempt.request_headers
    assert sent["webhook-id"] == received.headers["webhook-id"]
    assert sent["webhook-timestamp"] == received.headers["webhook-timestamp"]
    assert sent["Content-Type"] == "application/json"
    assert sent["Host"] == received.headers["Host"]
    assert sent["Content-Length"] == received.headers["Content-Length"]
    assert sent["webhook-signature"] == "[redacted]"
    signature = received.headers["webhook-signature"]
    assert signature.startswith("v1,")
    assert attempt.response_headers["X-Request-Id"] == "rcv-42"
    assert attempt.response_headers["Retry-After"] == "5"
    # the signature is stored nowhere in clear
    raw = json.dumps(list(WebhookAttempt.objects.values()), default=str)
    assert signature.split(",", 1)[1] not in raw

    page = staff.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    html = page.content.decode()
    url = f"{receiver.url}/hooks/in?x=1"  # clipped to its column, whole in the tooltip
    assert f'POST <span class="jt-url" title="{url}">{url}</span>' in html.replace("&amp;", "&")
    assert "webhook-signature: [redacted]" in html
    assert "X-Request-Id: rcv-42" in html
    assert signature.split(",", 1)[1] not in html


def test_response_headers_are_bounded(staff: Client) -> None:
    many = {f"X-H{n:03d}": "v" for n in range(RESPONSE_HEADERS_LIMIT + 30)}
    many["X-H000"] = "x" * (HEADER_VALUE_LIMIT * 4)
    with running_receiver() as receiver:
        receiver.default = Reply(200, headers=many)
        delivery = _delivery_to(receiver.url + "/h")
        deliver(delivery.pk)
    headers = WebhookAttempt.objects.get(delivery=delivery).response_headers
    assert len(headers) == RESPONSE_HEADERS_LIMIT
    assert headers["X-H000"] == "x" * HEADER_VALUE_LIMIT


def test_an_attempt_with_no_answer_logs_its_url_and_no_response_headers() -> None:
    delivery = _delivery_to("http://127.0.0.1:9/closed")  # nothing listens on port 9
    deliver(delivery.pk)
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and attempt.error
    assert attempt.url == "http://127.0.0.1:9/closed"
    assert attempt.response_headers == {}
    assert attempt.request_headers["webhook-signature"] == "[redacted]"


# --- job search: metadata, external ids ---------------------------------------------------------


def test_jobs_found_by_metadata_value_string_number_and_nested(staff: Client) -> None:
    company = CompanyFactory()
    JobFactory(company=company, code="M-1", metadata={"customer": "acme", "batch": 7})
    JobFactory(company=company, code="M-2", metadata={"customer": "globex", "batch": "7"})
    JobFactory(company=company, code="M-3", metadata={"source": {"system": "sap"}})
    JobFactory(company=company, code="M-4", metadata={})

    assert _listed_codes(staff, "meta:customer=acme") == {"M-1"}
    assert _listed_codes(staff, "META:customer = acme") == {"M-1"}
    assert _listed_codes(staff, "meta:customer=Acme") == set()  # values match exactly
    assert _listed_codes(staff, "meta:batch=7") == {"M-1", "M-2"}  # the number or the string
    assert _listed_codes(staff, "meta:source.system=sap") == {"M-3"}
    assert _listed_codes(staff, "meta:nothing=acme") == set()
    assert _listed_codes(staff, "meta:=acme") == set()  # no key: not a metadata search


def test_jobs_found_by_push_communication_id_request_id_or_correlation(staff: Client) -> None:
    company = CompanyFactory()
    a, b, c = (JobFactory(company=company, code=f"X-{n}") for n in range(3))
    PushResult.objects.create(
        job=a, push_communication_id="pc-0001", request_id="req-9", status="success"
    )
    PushResult.objects.create(
        job=b, push_communication_id="pc-0002", request_id="req-9", status="failed"
    )
    PushCorrelation.objects.create(
        company=company, job=c, kind=PushCorrelationKind.PUSH_COMMUNICATION_ID, value="pc-0003"
    )
    uuid_like = "3f0b7c9e-7d55-4c1b-9d4e-2f1f6c6a8b11"
    PushResult.objects.create(job=c, push_communication_id=uuid_like, status="success")

    assert _listed_codes(staff, "pc-0001") == {"X-0"}
    assert _listed_codes(staff, "req-9") == {"X-0", "X-1"}
    assert _listed_codes(staff, "pc-0003") == {"X-2"}
    assert _listed_codes(staff, uuid_like) == {"X-2"}  # an id that looks like a job id too
    assert _listed_codes(staff, "pc-000") == set()  # external ids match exactly
    assert _listed_codes(staff, str(a.pk)) == {"X-0"}


def test_job_searches_run_as_many_queries_for_many_rows_as_for_one(staff: Client) -> None:
    company = CompanyFactory()

    def queries(term: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(JOBS, {"q": term}).status_code == 200
        return len(captured)

    def add(n: int) -> None:
        job = JobFactory(company=company, metadata={"customer": "acme"})
        PushResult.objects.create(
            job=job, push_communication_id=f"pc-{n}", request_id="req-1", status="success"
        )

    add(0)
    terms = ["meta:customer=acme", "req-1", "job-", "pc-0"]
    one = [queries(term) for term in terms]
    for n in range(1, 8):
        add(n)
    assert [queries(term) for term in terms] == one


# --- deliveries: by time window, by company -----------------------------------------------------


def _deliveries(company: Any, count: int) -> list[WebhookDelivery]:
    if not company.webhook_endpoints.exists():
        endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["jobs.create"])
    for _ in range(count):
        JobFactory(company=company)
    run_relay()
    return list(WebhookDelivery.objects.filter(company=company).order_by("created_at"))


def test_deliveries_filtered_by_company(staff: Client) -> None:
    acme, globex = CompanyFactory(name="Acme"), CompanyFactory(name="Globex")
    mine, theirs = _deliveries(acme, 2), _deliveries(globex, 1)
    found = _listed_deliveries(staff, {"company__id__exact": str(acme.pk)})
    assert found == {str(d.pk) for d in mine}
    assert str(theirs[0].pk) not in found
    page = staff.get(DELIVERIES).content.decode()
    assert 'id="company-filter"' in page  # the autocomplete, not a list of every company
    picked = staff.get(
        "/admin/autocomplete/",
        {
            "app_label": "webhooks",
            "model_name": "webhookdelivery",
            "field_name": "company",
            "term": "acm",
        },
    ).json()
    assert [r["text"] for r in picked["results"]] == ["Acme"]
    refused = staff.get(DELIVERIES, {"company__id__exact": "nope"})
    assert (refused.status_code, refused["Location"]) == (302, f"{DELIVERIES}?e=1")


def test_deliveries_filtered_by_created_window(staff: Client) -> None:
    old, new = _deliveries(CompanyFactory(), 2)
    WebhookDelivery.objects.filter(pk=old.pk).update(created_at=MOMENT - timedelta(days=3))
    WebhookDelivery.objects.filter(pk=new.pk).update(created_at=MOMENT)

    assert _listed_deliveries(staff, {"created_from": "2026-11-23"}) == {str(new.pk)}
    assert _listed_deliveries(staff, {"created_to": "2026-11-23"}) == {str(old.pk)}
    assert _listed_deliveries(
        staff, {"created_from": "2026-11-20", "created_to": "2026-11-23 07:32:06"}
    ) == {str(old.pk), str(new.pk)}
    # a bad date: the admin's "invalid lookup" answer (back to the list, flagged), never a 500
    refused = staff.get(DELIVERIES, {"created_from": "yesterday"})
    assert (refused.status_code, refused["Location"]) == (302, f"{DELIVERIES}?e=1")


def test_deliveries_filtered_by_last_attempt_window(staff: Client) -> None:
    with running_receiver() as receiver:
        a, b, never = _deliveries(CompanyFactory(), 3)
        WebhookDelivery.objects.filter(pk__in=[a.pk, b.pk]).update(
            endpoint=endpoint_create(company=a.company, url=receiver.url, events=["jobs.update"])
        )
        before = timezone.now()
        deliver(a.pk)  # the sender records when the attempt was made
        a.refresh_from_db()
    assert a.last_attempt_at is not None and a.last_attempt_at >= before
    never.refresh_from_db()
    assert never.last_attempt_at is None
    # created a day earlier (a delivery is always created before its attempts)
    WebhookDelivery.objects.update(created_at=MOMENT - timedelta(days=1))
    WebhookDelivery.objects.filter(pk=a.pk).update(last_attempt_at=MOMENT - timedelta(hours=5))
    WebhookDelivery.objects.filter(pk=b.pk).update(last_attempt_at=MOMENT)

    window = {"last_attempt_from": "2026-11-23 00:00", "last_attempt_to": "2026-11-23 07:00"}
    assert _listed_deliveries(staff, window) == {str(a.pk)}
    assert _listed_deliveries(staff, {"last_attempt_from": "2026-11-23 07:30"}) == {str(b.pk)}
    assert _listed_deliveries(staff, {"last_attempt_to": "2026-11-23 07:30"}) == {str(a.pk)}
    assert str(never.pk) not in _listed_deliveries(staff, {"last_attempt_from": "2026-01-01"})
    page = staff.get(reverse("admin:webhooks_webhookdelivery_change", args=[b.pk]))
    assert "2026-11-23 07:32:05 UTC" in page.content.decode()  # its last attempt, exactly


def test_deliveries_of_a_job_code_with_a_window_and_a_company(staff: Client) -> None:
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    job = JobFactory(company=company, code="ORDER-77")
    JobFactory(company=company, code="ORDER-78")
    run_relay()
    mine = {str(d.pk) for d in WebhookDelivery.objects.filter(object_id=str(job.pk))}
    assert mine
    found = _listed_deliveries(
        staff,
        {"q": "order-77", "company__id__exact": str(company.pk), "created_from": "2020-01-01"},
    )
    assert found == mine


def test_delivery_filters_run_as_many_queries_for_many_rows_as_for_one(staff: Client) -> None:
    company = CompanyFactory()
    params = {
        "company__id__exact": str(company.pk),
        "created_from": "2020-01-01",
        "last_attempt_from": "2020-01-01",
        "events_id": "jobs.create",
    }

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get(DELIVERIES, params).status_code == 200
        return len(captured)

    _deliveries(company, 1)
    WebhookDelivery.objects.update(last_attempt_at=MOMENT)
    one = queries()
    _deliveries(company, 6)
    WebhookDelivery.objects.update(last_attempt_at=MOMENT)
    assert len(_listed_deliveries(staff, params)) == 7
    assert queries() == one


# --- PostgreSQL: each search can use its index ----------------------------------------------------


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # tiny tables: ask whether it *can*
        try:
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET enable_seqscan")


def _captured(staff: Client, url: str, params: dict[str, str], table: str) -> list[Any]:
    with CaptureQueriesContext(connection) as captured:
        assert staff.get(url, params).status_code == 200
    return [q["sql"] for q in captured.captured_queries if f'FROM "{table}"' in q["sql"]]


@pytest.mark.postgres
def test_metadata_and_external_id_searches_use_their_indexes(staff: Client) -> None:
    from jobs import search

    job = JobFactory(metadata={"customer": "acme"})
    PushResult.objects.create(
        job=job, push_communication_id="pc-1", request_id="r", status="success"
    )
    metadata = search.jobs_with_metadata(
        Job.objects.order_by(), search.parse_metadata_term("meta:customer=acme")
    )
    sql, params = metadata.query.sql_with_params()
    assert "job_metadata_path" in _plan(sql, params)
    results = PushResult.objects.filter(push_communication_id="pc-1").order_by()
    assert "push_result_communication" in _plan(*results.query.sql_with_params())
    requests = PushResult.objects.filter(request_id="r").exclude(request_id="").order_by()
    assert "push_result_request" in _plan(*requests.query.sql_with_params())
    correlations = PushCorrelation.objects.filter(value="pc-1").order_by()
    assert "push_correlation_value" in _plan(*correlations.query.sql_with_params())
    # and the console's own statements are the ones planned: the metadata containment
    [listed] = [
        q
        for q in _captured(staff, JOBS, {"q": "meta:customer=acme"}, "jobs_job")
        if "@>" in q and "ORDER BY" in q
    ]
    assert '"jobs_job"."metadata" @>' in listed


@pytest.mark.postgres
def test_the_delivery_list_and_its_time_windows_use_indexes(staff: Client) -> None:
    _deliveries(CompanyFactory(), 3)
    listed = WebhookDelivery.objects.filter(created_at__gte=MOMENT).order_by("-created_at", "-id")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_sort = off")
        try:
            plan = _plan(*listed[:100].query.sql_with_params())
        finally:
            cursor.execute("RESET enable_sort")
    assert "webhook_delivery_created" in plan, plan
    attempted = WebhookDelivery.objects.filter(last_attempt_at__gte=MOMENT).order_by()
    assert "webhook_delivery_last_attempt" in _plan(*attempted.query.sql_with_params())


def test_push_result_and_unmatched_push_times_follow_the_zone(staff: Client) -> None:
    from jobs.models import UnmatchedPush

    job = JobFactory()
    result = PushResult.objects.create(
        job=job, push_communication_id="pc-tz", status="success", requested_on=MOMENT
    )
    PushResult.objects.filter(pk=result.pk).update(received_at=MOMENT)
    unmatched = UnmatchedPush.objects.create(
        company=job.company, push_communication_id="pc-late", status="success", data={}
    )
    UnmatchedPush.objects.filter(pk=unmatched.pk).update(received_at=MOMENT)
    _set_zone(staff, "Europe/Paris")
    paris = "2026-11-23 08:32:05 CET (UTC+01:00)"
    pages = [
        reverse("admin:jobs_pushresult_changelist"),
        reverse("admin:jobs_pushresult_change", args=[result.pk]),
        reverse("admin:jobs_unmatchedpush_changelist"),
        reverse("admin:jobs_unmatchedpush_change", args=[unmatched.pk]),
    ]
    for url in pages:
        assert paris in staff.get(url).content.decode(), url


def test_the_dashboards_since_links_keep_their_offset_in_any_zone(staff: Client) -> None:
    from html import unescape
    from urllib.parse import parse_qs, urlparse

    job = JobFactory(code="DASH-TZ")
    _set_zone(staff, "Pacific/Kiritimati")  # UTC+14: a time without offset would be read 14 h off
    page = staff.get(reverse("admin:index")).content.decode()
    links = [unescape(h) for h in re.findall(r'href="([^"]*created_from=[^"]*)"', page)]
    assert links
    since = parse_qs(urlparse(links[0]).query)["created_from"][0]
    assert since.endswith("+00:00"), since
    assert job.code in staff.get(links[0]).content.decode()


def test_a_job_whose_code_looks_like_a_uuid_is_found_by_its_code(staff: Client) -> None:
    """The API takes a UUID as a job's code; a UUID-shaped term was searched only as an id, so
    such a job, and its deliveries, could not be found by code (in either letter case)."""
    code = "3F0B7C9E-7D55-4C1B-9D4E-2F1F6C6A8B11"
    company = CompanyFactory()
    endpoint_create(company=company, url="http://127.0.0.1:9/h", events=["*"])
    job = JobFactory(company=company, code=code)
    other = JobFactory(company=company)
    run_relay()
    [delivery] = WebhookDelivery.objects.filter(object_id=str(job.pk))

    for term in (code, code.lower()):
        assert _listed_codes(staff, term) == {code}, term
        assert _listed_deliveries(staff, {"q": term}) == {str(delivery.pk)}, term
    assert _listed_codes(staff, str(other.pk)) == {other.code}  # an id is still an id
    assert _listed_deliveries(staff, {"q": str(delivery.pk)}) == {str(delivery.pk)}


def test_the_filter_forms_keep_the_search_and_the_sort(staff: Client) -> None:
    """The type, created and company filter forms submitted the other filters but not the
    search (q) nor the sort (o): typing a filter after a search listed every company's jobs."""
    page = staff.get(JOBS, {"q": "acme", "o": "-3", "status__exact": "pending"}).content.decode()
    forms = re.findall(r'<form method="get" class="jt-filter-form"[^>]*>(.*?)</form>', page, re.S)
    assert forms  # the type filter's at least
    for form in forms:
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
        assert hidden.get("q") == "acme", form
        assert hidden.get("o") == "-3", form
        assert hidden.get("status__exact") == "pending", form
    deliveries = staff.get(DELIVERIES, {"q": "JOB-1"}).content.decode()
    for form in re.findall(
        r'<form method="get" class="jt-filter-form"[^>]*>(.*?)</form>', deliveries, re.S
    ):
        assert 'name="q" value="JOB-1"' in form


PUSH_RESULTS = "/admin/jobs/pushresult/"
REPORTS = "/admin/reports/report/"


def _listed_ids(staff: Client, url: str, query: str) -> set[str]:
    response = staff.get(url, {"q": query})
    assert response.status_code == 200, response.content[:500]
    return {str(row.pk) for row in response.context["cl"].result_list}


def test_push_results_found_by_push_communication_id_or_request_id(staff: Client) -> None:
    job = JobFactory()
    one = PushResult.objects.create(
        job=job, push_communication_id="PC-0001", request_id="req-9", status="success"
    )
    two = PushResult.objects.create(
        job=job, push_communication_id="pc-0002", request_id="req-9", status="failed"
    )
    PushResult.objects.create(job=job, push_communication_id="pc-0003", status="success")

    assert _listed_ids(staff, PUSH_RESULTS, " PC-0001 ") == {str(one.pk)}
    assert _listed_ids(staff, PUSH_RESULTS, "req-9") == {str(one.pk), str(two.pk)}
    assert _listed_ids(staff, PUSH_RESULTS, "pc-0001") == set()  # the sender's id, exactly
    assert _listed_ids(staff, PUSH_RESULTS, "pc-000") == set()


def test_reports_found_by_job_code_in_any_case_or_job_id(staff: Client) -> None:
    from reports.models import Report

    first, second = (CompanyFactory() for _ in range(2))
    a = JobFactory(company=first, code="EXP-7")
    b = JobFactory(company=second, code="exp-7")  # the same code in another company
    c = JobFactory(company=first, code="EXP-8")
    reports = {job.code: Report.objects.create(job=job, status="ready") for job in (a, b, c)}

    assert _listed_ids(staff, REPORTS, "Exp-7") == {
        str(reports["EXP-7"].pk),
        str(reports["exp-7"].pk),
    }
    assert _listed_ids(staff, REPORTS, str(c.pk)) == {str(reports["EXP-8"].pk)}
    assert _listed_ids(staff, REPORTS, "EXP") == set()  # codes match whole


@pytest.mark.postgres
def test_push_result_and_report_searches_use_indexes(staff: Client) -> None:
    from reports.models import Report

    job = JobFactory(code="EXP-9")
    Report.objects.create(job=job, status="ready")
    PushResult.objects.create(job=job, push_communication_id="pc-1", request_id="r", status="x")
    for url, query, table, indexes in (
        (PUSH_RESULTS, "pc-1", "jobs_pushresult", {"push_result_communication"}),
        (REPORTS, "exp-9", "jobs_job", {"job_code_upper_pattern"}),
        (REPORTS, "exp-9", "reports_report", {"reports_report_job_id_key"}),
    ):
        statements = [
            sql
            for sql in _captured(staff, url, {"q": query}, table)
            if sql.startswith("SELECT") and "WHERE" in sql
        ]
        assert statements, (url, table)
        for sql in statements:
            plan = _plan(sql, None)
            assert "Seq Scan" not in plan, (url, sql, plan)
            assert any(name in plan for name in indexes), (url, sql, plan)
