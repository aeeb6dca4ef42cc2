"""Coalesced wake-ups (config/outbox.py): one background thread per process sends them."""

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from config import outbox


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """What the waker publishes (recorded instead of sent to a broker)."""
    published: list[tuple[str, tuple[Any, ...]]] = []
    lock = threading.Lock()

    def record(task_name: str, args: Any = ()) -> bool:
        with lock:
            published.append((task_name, tuple(args)))
        return True

    monkeypatch.setattr(outbox, "publish", record)
    return published


def test_wake_ups_asked_for_within_the_window_are_sent_once_more_after_it(
    sent: list[tuple[str, tuple[Any, ...]]],
) -> None:
    waker = outbox.Waker(window=0.5)

    waker.request(("jobs.relay_events", ()))
    assert wait_for(lambda: len(sent) == 1)  # the first one goes out at once
    for _ in range(200):  # a burst of commits while the window is open
        waker.request(("jobs.relay_events", ()))

    assert wait_for(lambda: len(sent) == 2)
    time.sleep(1.2)  # two more windows: nothing else was asked for
    assert sent == [("jobs.relay_events", ()), ("jobs.relay_events", ())]


def test_distinct_wake_ups_are_each_sent(sent: list[tuple[str, tuple[Any, ...]]]) -> None:
    waker = outbox.Waker(window=0.3)

    waker.request(("jobs.relay_events", ()))
    assert wait_for(lambda: len(sent) == 1)
    waker.request(("reports.build", ("a",)))
    waker.request(("reports.build", ("b",)))
    waker.request(("reports.build", ("a",)))

    assert wait_for(lambda: len(sent) == 3)
    assert sent[1:] == [("reports.build", ("a",)), ("reports.build", ("b",))]


def test_with_no_window_the_committing_thread_publishes_itself(
    sent: list[tuple[str, tuple[Any, ...]]], settings: Any
) -> None:
    settings.JOBTRAIL_WAKEUP_WINDOW = 0

    outbox.wake("jobs.relay_events")

    assert sent == [("jobs.relay_events", ())]  # already sent, by this thread


def test_stop_waker_sends_what_is_pending_and_the_next_wake_starts_a_new_thread(
    sent: list[tuple[str, tuple[Any, ...]]], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.JOBTRAIL_WAKEUP_WINDOW = 30  # longer than stop's wait: only stop_waker sends it
    monkeypatch.setattr(outbox, "_waker", None)
    outbox.wake("jobs.relay_events")
    assert wait_for(lambda: len(sent) == 1)  # the first one at once
    thread = outbox._waker._thread  # type: ignore[union-attr]
    outbox.wake("reports.build", ["a"])  # inside the window: waits for it

    outbox.stop_waker()

    assert sent == [("jobs.relay_events", ()), ("reports.build", ("a",))]
    assert thread is not None and not thread.is_alive()
    assert outbox._waker is None
    outbox.wake("jobs.relay_events")  # a new thread, sending at once
    assert wait_for(lambda: len(sent) == 3)
    outbox.stop_waker()


def test_a_forked_child_sends_its_own_wake_ups(
    sent: list[tuple[str, tuple[Any, ...]]], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker forked while the parent's wake-up thread runs starts a thread of its own."""
    settings.JOBTRAIL_WAKEUP_WINDOW = 0.2
    monkeypatch.setattr(outbox, "_waker", None)
    outbox.wake("jobs.relay_events")  # the parent's thread exists now
    assert wait_for(lambda: len(sent) == 1)
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # the child: report what its waker publishes through the pipe
        try:
            monkeypatch.setattr(
                outbox, "publish", lambda name, args=(): os.write(write_end, name.encode()) > 0
            )
            outbox.wake("webhooks.send_due_deliveries")
            time.sleep(2)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 10)
        assert ready, "the forked child published nothing"
        assert os.read(read_end, 100) == b"webhooks.send_due_deliveries"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


# --- one outstanding wake-up per task (the ops.Wakeup row, read by the wake-up thread) --------


def _sent_through(waker: outbox.Waker, sent: list[Any], marker: str) -> None:
    """Wait until the thread has handled everything asked for so far: a message that is never
    held back (it has arguments) goes out after them."""
    waker.request(("reports.build_job_report", (marker,)))
    assert wait_for(lambda: ("reports.build_job_report", (marker,)) in sent)


@pytest.mark.django_db(transaction=True)  # the wake-up thread reads the row on its connection
def test_an_outstanding_wake_up_is_not_published_again_until_a_worker_starts_on_it(
    sent: list[tuple[str, tuple[Any, ...]]],
) -> None:
    from ops.models import Wakeup

    relay = ("jobs.relay_events", ())
    waker = outbox.Waker(window=0.01)
    try:
        waker.request(relay)
        _sent_through(waker, sent, "a")
        for n in range(5):  # job changes commit while the first wake-up waits in the queue
            waker.request(relay)
            _sent_through(waker, sent, f"b{n}")
        assert sent.count(relay) == 1
        assert Wakeup.objects.get(task="jobs.relay_events").pending_since is not None

        outbox.wakeup_consumed("jobs.relay_events")  # a worker starts on it
        waker.request(relay)  # a change committed after that needs a wake-up of its own
        _sent_through(waker, sent, "c")
        assert sent.count(relay) == 2
    finally:
        waker.stop()  # its thread's database connection is closed before the test's ends


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_the_broker_refused_does_not_count_as_outstanding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ops.models import Wakeup

    monkeypatch.setattr(outbox, "publish", lambda name, args=(): False)
    assert outbox.publish_wakeup("webhooks.send_due_deliveries") is False
    assert Wakeup.objects.get(task="webhooks.send_due_deliveries").pending_since is None
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): True)
    assert outbox.publish_wakeup("webhooks.send_due_deliveries") is True
    assert outbox.publish_wakeup("webhooks.send_due_deliveries") is False  # outstanding now


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lost", [False, True], ids=["none-outstanding", "one-presumed-lost"])
def test_of_two_processes_deciding_at_once_only_one_publishes(
    monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    """Both read the row and decide to publish; the second's compare-and-set finds the row
    changed by the first and publishes nothing (the row stays as the first left it)."""
    from ops.models import Wakeup

    task = "webhooks.send_due_deliveries"
    before = timezone.now() - timedelta(hours=2) if lost else None  # lost: past every wait
    Wakeup.objects.update_or_create(
        task=task, defaults={"pending_since": before, "unanswered": 1 if lost else 0}
    )
    published: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(name) or True)
    read = outbox._wakeup_row
    stale = read(task)  # what the second process read before the first one published
    assert outbox.publish_wakeup(task, resend_lost=True) is True
    first = Wakeup.objects.get(task=task)
    monkeypatch.setattr(outbox, "_wakeup_row", lambda name: stale)
    assert outbox.publish_wakeup(task, resend_lost=True) is False
    assert published == [task]
    after = Wakeup.objects.get(task=task)
    assert (after.pending_since, after.unanswered) == (first.pending_since, first.unanswered)
    assert after.unanswered == (2 if lost else 1)


@pytest.mark.django_db
def test_a_wake_up_unanswered_for_days_is_resent_by_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait before a wake-up is presumed lost doubles per unanswered one, up to an hour;
    after ~36 hours unanswered (42 sweeps) the doubling must not overflow."""
    from ops.models import Wakeup

    task = "jobs.relay_events"
    Wakeup.objects.update_or_create(
        task=task,
        defaults={"pending_since": timezone.now() - timedelta(hours=2), "unanswered": 42},
    )
    published: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(name) or True)

    assert outbox.publish_wakeup(task, resend_lost=True) is True
    assert published == [task]
    assert Wakeup.objects.get(task=task).unanswered == 43


@pytest.mark.django_db(transaction=True)
def test_a_worker_coming_up_forgets_the_wake_ups_outstanding_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a worker outage the wait before a wake-up is presumed lost had doubled (nobody
    answered); if the broker lost the last one (Redis restarted empty, or the dead worker had
    fetched it), events and webhooks waited that long again once a worker was back. A worker
    that is ready (Celery's worker_ready) forgets them: the next job change wakes it at once."""
    from celery.signals import worker_ready

    from ops.models import Wakeup

    for task in sorted(outbox.ONE_OUTSTANDING):
        Wakeup.objects.update_or_create(
            task=task,
            defaults={"pending_since": timezone.now() - timedelta(minutes=3), "unanswered": 3},
        )
    published: list[str] = []
    monkeypatch.setattr(outbox, "publish", lambda name, args=(): published.append(name) or True)
    assert outbox.publish_wakeup("jobs.relay_events", resend_lost=True) is False  # waits 4 min

    worker_ready.send(sender=None)

    assert set(Wakeup.objects.values_list("pending_since", "unanswered")) == {(None, 0)}
    assert outbox.publish_wakeup("jobs.relay_events") is True  # a job change's, at once
    assert published == ["jobs.relay_events"]


def test_a_refused_publish_pauses_the_broker_for_the_process(
    broker_down: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that refuses the connection: the publish answers False (the rows wait for a
    sweep), and for BROKER_BACKOFF seconds later publishes do not ask it again."""
    caplog.set_level(logging.INFO, logger="config.outbox")

    assert outbox.publish("jobs.relay_events") is False
    assert outbox.broker_pause.active()
    assert outbox.publish("webhooks.send_due_deliveries") is False

    records = [r for r in caplog.records if r.name == "config.outbox"]
    refused = [r for r in records if r.levelno == logging.WARNING]
    skipped = [r for r in records if "presumed down" in r.getMessage()]
    assert len(refused) == 1 and "Connection refused" in refused[0].getMessage()
    assert len(skipped) == 1 and "webhooks.send_due_deliveries" in skipped[0].getMessage()

    outbox.broker_pause.end()  # the pause is over: the broker is asked (and refuses) again
    assert outbox.publish("jobs.relay_events") is False
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
