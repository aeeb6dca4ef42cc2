"""Issue 11, finding 5: the admin login locks out after repeated failures (django-axes), the
lock is keyed on the same client identity as the throttles, staff see it and can lift it."""

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.test import Client

from jobs.models import Company
from tests.factories import ApiClientFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "pass-word-123"


def login(username: str, password: str, *, address: str = "198.51.100.7", xff: str = "") -> Any:
    client = Client(REMOTE_ADDR=address, **({"HTTP_X_FORWARDED_FOR": xff} if xff else {}))
    return client.post(LOGIN, {"username": username, "password": password})


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


@pytest.fixture
def superuser() -> Any:
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def test_80_wrong_passwords_then_the_right_one_is_refused(superuser: Any, settings: Any) -> None:
    assert settings.AXES_FAILURE_LIMIT == 5
    answers = [login("root", f"guess-{n}").status_code for n in range(80)]

    right = login("root", PASSWORD)

    assert answers[:4] == [200] * 4  # the form again, "Please enter the correct…"
    assert set(answers[4:]) == {429}
    assert right.status_code == 429
    assert not logged_in(right)
    page = right.content.decode()
    assert "Too many failed logins" in page and "Access attempts" in page


def test_a_new_forwarded_for_on_every_attempt_does_not_dodge_the_lockout(superuser: Any) -> None:
    for n in range(10):
        login("root", f"guess-{n}", xff=f"10.9.{n}.1")

    assert login("root", PASSWORD, xff="203.0.113.99").status_code == 429


def test_the_username_locks_however_many_addresses_try_it(superuser: Any) -> None:
    """A distributed guesser gets no more than the failure limit on one account."""
    for n in range(5):
        login("root", f"guess-{n}", address=f"198.51.100.{10 + n}")

    assert login("root", PASSWORD, address="192.0.2.200").status_code == 429
    # another staff user from a fresh address still logs in
    UserFactory(username="ops", is_staff=True)
    assert logged_in(login("ops", PASSWORD, address="192.0.2.201"))


def test_staff_see_the_lockout_and_lift_it(superuser: Any) -> None:
    for n in range(5):
        login("root", f"guess-{n}")
    assert login("root", PASSWORD).status_code == 429
    staff = Client()
    staff.force_login(UserFactory(username="colleague", is_staff=True, is_superuser=True))

    listed = staff.get("/admin/axes/accessattempt/?locked_out=yes")
    assert listed.status_code == 200
    page = listed.content.decode()
    assert "root" in page and "198.51.100.7" in page and "Locked Out" in page
    attempts = list(AccessAttempt.objects.values_list("pk", flat=True))
    lifted = staff.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert lifted.status_code == 302

    assert logged_in(login("root", PASSWORD))


def test_the_stored_attempt_keeps_no_password(superuser: Any) -> None:
    login("root", "my-secret-guess")

    attempt = AccessAttempt.objects.get()
    assert "my-secret-guess" not in attempt.post_data
    assert "password=" in attempt.post_data


def test_a_success_resets_the_count(superuser: Any) -> None:
    for n in range(4):
        login("root", f"guess-{n}")
    assert logged_in(login("root", PASSWORD))

    for n in range(4):
        login("root", f"guess-again-{n}")
    assert logged_in(login("root", PASSWORD))


def test_api_logins_neither_count_toward_nor_are_refused_by_the_admin_lockout(
    settings: Any,
) -> None:
    """The token endpoint has its own throttle; API failures write no axes rows."""
    settings.JOBTRAIL_AUTH_RATE_LIMIT = "1000/minute"
    user = ApiClientFactory(username="integration", company=Company.objects.create(name="Co"))
    for n in range(8):
        wrong = Client(REMOTE_ADDR="198.51.100.50").post(
            "/api/v1/auth/token/",
            {"username": user.username, "password": f"wrong-{n}"},
            content_type="application/json",
        )
        assert wrong.status_code == 401
    assert AccessAttempt.objects.count() == 0
    right = Client(REMOTE_ADDR="198.51.100.50").post(
        "/api/v1/auth/token/",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
    )
    assert right.status_code == 200
