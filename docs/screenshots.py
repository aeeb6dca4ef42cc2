"""Seed demo data and capture every staff-console page at 1280 px into docs/screenshots/.

    make screenshots            # or: .venv/bin/python docs/screenshots.py [--measure]

Runs against a throwaway SQLite database (``DATABASE_URL`` overrides it) with the test settings,
serves the console from this process (Django's WSGI app on a loopback port), and drives
Debian's Chromium (``/usr/bin/chromium``) through Playwright at a 1280x900 viewport; each PNG is
the page's first 900 px. ``--measure`` prints each page's ``scrollWidth`` instead of writing
files (the layout check the browser tests assert).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
WIDTH, HEIGHT = 1280, 900
PASSWORD = "screenshots-pass-word-123"
sys.path.insert(0, str(ROOT))

_tmp = tempfile.mkdtemp(prefix="jobtrail-shots-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_tmp}/console.sqlite3")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop in this thread

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.staticfiles.handlers import StaticFilesHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.utils import timezone  # noqa: E402

from jobs import services  # noqa: E402
from jobs.demo import seed_demo  # noqa: E402
from jobs.ingest import push_ingest  # noqa: E402
from jobs.models import Company, Job, JobStatus  # noqa: E402
from jobs.relay import events_relay  # noqa: E402
from ops.services import heartbeat_record  # noqa: E402
from reports.models import Report  # noqa: E402
from tests.receiver import Reply, running_receiver  # noqa: E402
from webhooks.models import DeliveryStatus, WebhookDelivery  # noqa: E402
from webhooks.sending import deliver  # noqa: E402
from webhooks.services import endpoint_create  # noqa: E402

# the page's width, or the list's when its table scrolls inside the page (the admin's .results
# box has overflow-x: auto): what a reader would have to scroll sideways to see
OVERFLOW_JS = """() => {
  const results = document.querySelector('#changelist .results');
  const inner = results ? results.scrollWidth - results.clientWidth : 0;
  return document.scrollingElement.scrollWidth + Math.max(0, inner);
}"""


COLUMNS_JS = """() => Array.from(document.querySelectorAll('#result_list thead th')).map(
  th => th.className + ':' + Math.round(th.getBoundingClientRect().width)).join(' ')
  + ' | filter ' + (document.querySelector('#changelist-filter') || {offsetWidth: 0}).offsetWidth
  + ' | content ' + document.querySelector('#content').offsetWidth"""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def seed(receiver_url: str) -> dict[str, Any]:
    """Demo jobs over the last week, deliveries delivered, retrying and failed, heartbeats."""
    call_command("migrate", verbosity=0)
    rng = random.Random(13)
    creds = seed_demo(jobs=72)
    company = creds.company
    endpoint_create(
        company=company,
        url=f"{receiver_url}/hooks/jobtrail/production-receiver",
        events=["*"],
        description="The customer's receiver (answers 200, sometimes 500)",
    )
    events_relay(budget=None)
    now = timezone.now()
    jobs = list(Job.objects.order_by("created_at"))
    for index, job in enumerate(jobs):  # spread over 7 days: the trends have a shape
        created = now - timedelta(minutes=rng.randint(5, 7 * 24 * 60)) if index % 3 else now
        Job.objects.filter(pk=job.pk).update(created_at=created)
    deliveries = list(WebhookDelivery.objects.select_related("endpoint").order_by("created_at"))
    for index, delivery in enumerate(deliveries):
        deliver(delivery.pk)
        if index % 5 == 0:  # a few left retrying, their next attempt hours away
            WebhookDelivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=now + timedelta(hours=rng.randint(1, 9)),
            )
    # each delivery made when its job was (the per-endpoint trend has a shape too)
    created = {str(pk): at for pk, at in Job.objects.values_list("pk", "created_at")}
    for delivery in WebhookDelivery.objects.only("pk", "object_id"):
        job_created = created.get(delivery.object_id)
        if job_created is not None:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                created_at=job_created + timedelta(seconds=rng.randint(1, 90))
            )
    heartbeat_record(name="beat", hostname="beat-1.internal")
    heartbeat_record(name="worker", hostname="worker-7c9f.internal")
    push_ingest(
        company=company,
        data=services.PushResultData(
            push_communication_id="3f2a9c0e1b7d4e55a0c1d2e3", status="success", request_id="req-81"
        ),
    )
    user = get_user_model().objects.create_superuser(
        username="support", email="support@example.com", password=PASSWORD
    )
    interesting = (
        Job.objects.filter(company=company, status=JobStatus.COMPLETED_WITH_ERRORS)
        .order_by("-created_at")
        .first()
    )
    return {"user": user, "job": interesting, "company": Company.objects.get(pk=company.pk)}


def pages(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(file name, path, the element scrolled to the top of the picture or "")."""
    job = data["job"]
    delivery = (
        WebhookDelivery.objects.filter(attempts__gt=1).first() or WebhookDelivery.objects.first()
    )
    assert delivery is not None
    push = job.push_results.order_by("id").first()
    endpoint = delivery.endpoint
    active = Job.objects.filter(status__in=[JobStatus.PENDING, JobStatus.PROCESSING]).first()
    report = Report.objects.select_related("job").order_by("-job__created_at").first()
    assert active is not None and report is not None
    job_page = f"/admin/jobs/job/{job.pk}/change/"
    delivery_page = f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/"
    return [
        ("dashboard", "/admin/", ""),
        ("dashboard-trends-7d", "/admin/?window=7d", "#trends"),
        ("jobs", "/admin/jobs/job/", ""),
        ("job", job_page, ""),
        ("job-timeline", job_page, "#timeline"),
        ("push-results", "/admin/jobs/pushresult/", ""),
        ("push-result", f"/admin/jobs/pushresult/{push.pk}/change/", ""),
        ("unmatched-pushes", "/admin/jobs/unmatchedpush/", ""),
        ("companies", "/admin/jobs/company/", ""),
        ("company", f"/admin/jobs/company/{data['company'].pk}/change/", ""),
        ("deliveries", "/admin/webhooks/webhookdelivery/", ""),
        ("delivery", delivery_page, ""),
        ("delivery-attempts", delivery_page, ".inline-group"),
        ("endpoints", "/admin/webhooks/webhookendpoint/", ""),
        ("endpoint", f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/", ""),
        ("reports", "/admin/reports/report/", ""),
        ("report", f"/admin/reports/report/{report.pk}/change/", ""),
        ("time-zone", "/admin/time-zone/", ""),
        ("cancel-confirmation", f"/admin/jobs/job/{active.pk}/cancel/", ""),
    ]


def _redeliver_failed_form(page: Any, base: str) -> None:
    """The endpoints list's "Redeliver everything that failed … since" action, its form."""
    page.goto(f"{base}/admin/webhooks/webhookendpoint/")
    page.locator("#result_list tbody input.action-select").first.check()
    page.select_option("select[name=action]", "redeliver_failed_since")
    page.click(".actions button[name=index]")
    page.wait_for_selector("input[name=since]")


def _lockout(page: Any, base: str) -> None:
    """The page a locked-out login gets (5 wrong passwords for one username)."""
    for n in range(5):
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "former-contractor")
        page.fill("#id_password", f"guess-{n}")
        page.click("#login-form input[type=submit]")
    page.wait_for_selector("h1:has-text('Too many failed logins')")


def _shoot(page: Any, name: str, anchor: str, *, measure: bool) -> bool:
    """Write the picture (or print the width); whether the page is wider than 1280 px."""
    width = page.evaluate(OVERFLOW_JS)
    if measure:
        print(f"{name:24} {width:5} {'TOO WIDE' if width > WIDTH else 'ok'}")
        if "--columns" in sys.argv and width > WIDTH:
            print(page.evaluate(COLUMNS_JS))
        return width > WIDTH
    if anchor:  # the viewport (1280x900) scrolled to the element
        page.evaluate("(s) => document.querySelector(s).scrollIntoView()", anchor)
        page.screenshot(path=str(OUT / f"{name}.png"))
    else:
        page.screenshot(
            path=str(OUT / f"{name}.png"), clip={"x": 0, "y": 0, "width": WIDTH, "height": HEIGHT}
        )
    print(f"docs/screenshots/{name}.png  (scrollWidth {width})")
    return width > WIDTH


def capture(base: str, targets: list[tuple[str, str, str]], *, measure: bool) -> int:
    from playwright.sync_api import sync_playwright

    too_wide = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        page = context.new_page()
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "support")
        page.fill("#id_password", PASSWORD)
        page.click("#login-form input[type=submit]")
        page.wait_for_url(f"{base}/admin/")
        page.evaluate("localStorage.setItem('jobtrail.live.paused', '1')")  # still pictures
        OUT.mkdir(parents=True, exist_ok=True)
        for name, path, anchor in targets:
            page.goto(base + path)
            page.wait_for_load_state("load")
            too_wide += _shoot(page, name, anchor, measure=measure)
        _redeliver_failed_form(page, base)
        too_wide += _shoot(page, "redeliver-failed-since", "", measure=measure)
        # last: the failures lock this address out of the login form (not the session above)
        locked = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}).new_page()
        _lockout(locked, base)
        too_wide += _shoot(locked, "lockout", "", measure=measure)
        browser.close()
    return too_wide


def main() -> int:
    measure = "--measure" in sys.argv
    with running_receiver() as receiver:
        calls = 0

        def respond(request: Any) -> Reply:
            nonlocal calls
            calls += 1
            return Reply(500, "upstream busy") if calls % 4 == 0 else Reply(200)

        receiver.respond = respond
        data = seed(receiver.url)
    application = StaticFilesHandler(get_wsgi_application())
    server = make_server(
        "127.0.0.1", 0, application, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        too_wide = capture(f"http://127.0.0.1:{server.server_port}", pages(data), measure=measure)
    finally:
        server.shutdown()
    return 1 if too_wide and measure else 0


if __name__ == "__main__":
    sys.exit(main())
