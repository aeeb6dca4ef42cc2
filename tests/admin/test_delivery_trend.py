"""The dashboard's delivery success per endpoint over time: one bar per bucket with its counts."""

import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import CompanyFactory, JobFactory
from tests.relay import run_relay
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create

pytestmark = pytest.mark.django_db

D, P, F = DeliveryStatus.DELIVERED, DeliveryStatus.PENDING, DeliveryStatus.FAILED
BAR = re.compile(
    r'<g class="jt-bucket"[^>]*data-bucket="([^"]+)" data-delivered="(\d+)" '
    r'data-pending="(\d+)" data-failed="(\d+)"><title>([^<]*)</title>'
)


def _deliveries(plan: list[tuple[WebhookEndpoint, datetime, str]]) -> None:
    """One delivery per (endpoint, created at, status), made by the relay, then placed."""
    by_endpoint: dict[int, list[tuple[datetime, str]]] = {}
    for endpoint, moment, status in plan:
        by_endpoint.setdefault(endpoint.pk, []).append((moment, status))
    company = plan[0][0].company
    for _ in range(max(len(v) for v in by_endpoint.values())):
        JobFactory(company=company)
    run_relay()
    for pk, wanted in by_endpoint.items():
        rows = list(WebhookDelivery.objects.filter(endpoint_id=pk).order_by("id"))
        assert len(rows) >= len(wanted)
        for row, (moment, status) in zip(rows, wanted, strict=False):
            WebhookDelivery.objects.filter(pk=row.pk).update(created_at=moment, status=status)
        # the rest are left out of every window
        WebhookDelivery.objects.filter(pk__in=[r.pk for r in rows[len(wanted) :]]).update(
            created_at=timezone.now() - timedelta(days=90)
        )


def _series(html: str, endpoint: WebhookEndpoint) -> dict[str, tuple[int, int, int, str]]:
    trend = html[html.index('id="trend-deliveries"') :]
    row = trend[trend.index(f'<tr data-endpoint="{endpoint.pk}">') :]
    row = row[: row.index("</tr>")]
    return {b: (int(d), int(p), int(f), t) for b, d, p, f, t in BAR.findall(row)}


def test_each_endpoint_shows_its_deliveries_per_hour_and_per_day(staff: Client) -> None:
    company = CompanyFactory()
    a = endpoint_create(company=company, url="http://127.0.0.1:9/a", events=["*"])
    b = endpoint_create(company=company, url="http://127.0.0.1:9/b", events=["*"])
    hour = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    # buckets away from the windows' edges: a new hour or day during the test moves nothing
    one_h, three_h = hour - timedelta(hours=1), hour - timedelta(hours=3)
    two_d, ten_d = day - timedelta(days=2), day - timedelta(days=10)
    _deliveries(
        [
            (a, one_h + timedelta(minutes=5), D),
            (a, one_h + timedelta(minutes=50), D),
            (a, one_h + timedelta(minutes=59, seconds=59), F),
            (a, three_h + timedelta(minutes=1), P),
            (a, two_d + timedelta(hours=13), F),
            (a, ten_d + timedelta(hours=1), D),
            (b, three_h, D),
            (b, two_d + timedelta(hours=23, minutes=59), D),
            (b, two_d + timedelta(hours=1), D),
        ]
    )
    index = reverse("admin:index")

    html = staff.get(index + "?window=24h").content.decode()
    series = _series(html, a)
    assert len(series) == 24
    assert series[one_h.isoformat()][:3] == (2, 0, 1)
    assert series[one_h.isoformat()][3] == (
        f"{one_h:%Y-%m-%d %H}:00 UTC: 2 delivered, 0 pending, 1 failed (67 % success)"
    )
    assert series[three_h.isoformat()][:3] == (0, 1, 0)
    assert sum(sum(c[:3]) for c in series.values()) == 4  # two days ago is outside 24 h
    series_b = _series(html, b)
    assert series_b[three_h.isoformat()][:3] == (1, 0, 0)
    assert sum(sum(c[:3]) for c in series_b.values()) == 1

    html = staff.get(index + "?window=7d").content.decode()
    series = _series(html, a)
    assert len(series) == 7
    today = {k: v[:3] for k, v in series.items() if v[:3] != (0, 0, 0)}
    expected_a = {two_d.isoformat(): (0, 0, 1)}
    for moment, counts in ((one_h, (2, 0, 1)), (three_h, (0, 1, 0))):
        key = moment.replace(hour=0).isoformat()
        prev = expected_a.get(key, (0, 0, 0))
        expected_a[key] = tuple(x + y for x, y in zip(prev, counts, strict=True))  # type: ignore[assignment]
    assert today == expected_a
    series_b = {k: v[:3] for k, v in _series(html, b).items() if v[:3] != (0, 0, 0)}
    assert series_b[two_d.isoformat()] == (2, 0, 0)  # 01:00 and 23:59 the same day

    html = staff.get(index + "?window=30d").content.decode()
    series = _series(html, a)
    assert len(series) == 30
    assert series[ten_d.isoformat()][:3] == (1, 0, 0)
    assert sum(sum(c[:3]) for c in series.values()) == 6


def _link(html: str, endpoint: WebhookEndpoint, table: str) -> str:
    """The href of ``endpoint``'s row in the dashboard table ``table`` (its id)."""
    part = html[html.index(f'id="{table}"') :]
    part = part[part.index(f'data-endpoint="{endpoint.pk}"') :]
    return unescape(re.search(r'href="([^"]+)"', part[: part.index("</tr>")]).group(1))  # type: ignore[union-attr]


def test_an_endpoints_link_lists_the_deliveries_its_row_counts(staff: Client) -> None:
    """The trend's row counts the endpoint's deliveries of the window; its link listed every
    delivery of the endpoint, whatever the window."""
    company = CompanyFactory()
    a = endpoint_create(company=company, url="http://127.0.0.1:9/a", events=["*"])
    now = timezone.now()
    _deliveries(
        [
            (a, now - timedelta(hours=2), D),
            (a, now - timedelta(hours=5), F),
            (a, now - timedelta(days=3), D),  # in 7 days, not in 24 hours
            (a, now - timedelta(days=20), F),  # in 30 days only
        ]
    )
    index = reverse("admin:index")

    for window, counted in (("24h", 2), ("7d", 3), ("30d", 4)):
        html = staff.get(index + f"?window={window}").content.decode()
        listed = staff.get(_link(html, a, "trend-deliveries"))
        assert listed.status_code == 200
        assert listed.context["cl"].result_count == counted, window


def test_a_failing_endpoints_link_lists_its_failed_deliveries_of_the_last_24_hours(
    staff: Client,
) -> None:
    company = CompanyFactory()
    a = endpoint_create(company=company, url="http://127.0.0.1:9/a", events=["*"])
    now = timezone.now()
    _deliveries(
        [
            (a, now - timedelta(hours=1), F),
            (a, now - timedelta(hours=3), F),
            (a, now - timedelta(hours=4), D),
            (a, now - timedelta(days=2), F),  # failed, but before the panel's 24 hours
        ]
    )

    html = staff.get(reverse("admin:index")).content.decode()
    listed = staff.get(_link(html, a, "failing-endpoints"))

    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2
