"""A sender round's threads per endpoint: an endpoint an earlier round found slow starts at
PER_ENDPOINT threads, one not heard from yet gets a quarter, slow ones together never hold every
thread, and lanes are taken in ``fair_at`` order within those caps."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from webhooks import sending


def test_an_endpoint_found_slow_starts_the_next_round_slow_with_room() -> None:
    endpoint = uuid.uuid4()
    sending._remember_slow(endpoint, True)
    try:
        fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)

        assert endpoint in fresh.slow
        assert endpoint in fresh.freed  # claimed for on its own, up to PER_ENDPOINT
        assert fresh.cap(endpoint) == sending.PER_ENDPOINT  # not all 8 threads, even alone
    finally:
        sending._remember_slow(endpoint, False)


def test_an_endpoint_quick_again_or_long_forgotten_is_not_slow_any_more() -> None:
    quick, old = uuid.uuid4(), uuid.uuid4()
    sending._remember_slow(quick, True)
    sending._remember_slow(quick, False)  # it answered quickly since
    sending._remember_slow(old, True)
    sending._slow_until[old] = time.monotonic() - 1  # remembered past SLOW_REMEMBERED

    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)

    assert quick not in fresh.slow and old not in fresh.slow
    assert fresh.cap(quick) == 2  # a quarter of the threads until it answers in this round
    assert old not in sending._slow_until


def test_an_endpoint_alone_gets_every_thread_only_once_it_answered_quickly() -> None:
    """Each worker process learns on its own: an endpoint nobody has heard from, alone in a
    round, never takes every thread (two processes would give a hanging receiver all 16)."""
    endpoint = uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.lanes[endpoint] = sending.deque()

    assert fresh.cap(endpoint) == 2
    fresh.quick.add(endpoint)  # what a sender thread does after an answer within SLOW_AFTER
    assert fresh.cap(endpoint) == 8


def _claim(endpoint: uuid.UUID, fair_at: datetime) -> Any:
    """What a round reads of a claim: its endpoint (active), its delivery's fair_at, start_by."""
    return SimpleNamespace(
        endpoint=SimpleNamespace(pk=endpoint, is_active=True),
        delivery=SimpleNamespace(fair_at=fair_at, handoff=False),
        number=1,
        trigger="scheduled",
        start_by=time.monotonic() + 60,
    )


def test_a_quiet_companys_claims_go_before_a_bursts_later_ones() -> None:
    """A burst of one company's deliveries waits in the lanes (fair_at 10 ms apart, one lane per
    endpoint); a quiet company's deliveries claimed after it, with earlier fair_at values, are
    sent before the burst's later ones: each of them, not only the first (one endpoint's lane
    of three does not wait for every other lane to have its turn)."""
    now = datetime.now(UTC)
    burst = [uuid.uuid4() for _ in range(50)]
    quiet, late = uuid.uuid4(), uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.add([_claim(e, now + timedelta(milliseconds=10 * i)) for i, e in enumerate(burst)])
    fresh.add(
        [_claim(quiet, now + timedelta(milliseconds=5 + i)) for i in range(3)]
        + [_claim(late, now + timedelta(1))]
    )

    order = [fresh._take().endpoint.pk for _ in range(6)]  # type: ignore[union-attr]

    assert order == [burst[0], quiet, quiet, quiet, burst[1], burst[2]]
    rest = [fresh._take().endpoint.pk for _ in range(len(burst) - 3)]  # type: ignore[union-attr]
    assert rest == burst[3:]
    assert fresh._take().endpoint.pk == late  # type: ignore[union-attr]
    assert fresh._take() is None


def test_an_endpoint_at_its_cap_lets_the_next_lane_go() -> None:
    """The earliest lane whose endpoint has every thread it may have is passed over, not
    waited for, and keeps its place for when a thread comes free."""
    now = datetime.now(UTC)
    busy, other = uuid.uuid4(), uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.add([_claim(busy, now), _claim(other, now + timedelta(seconds=1))])
    fresh.busy[busy] = fresh.cap(busy)

    assert fresh._take().endpoint.pk == other  # type: ignore[union-attr]
    assert fresh._take() is None
    fresh.busy[busy] -= 1
    assert fresh._take().endpoint.pk == busy  # type: ignore[union-attr]


def _started(fresh: sending._Round) -> Any:
    """Take the next claim and count its thread busy, as a sender thread does."""
    claim = fresh._take()
    if claim is not None:
        fresh.busy[claim.endpoint.pk] += 1
    return claim


def test_hanging_receivers_together_leave_threads_for_the_others() -> None:
    """Four slow endpoints at PER_ENDPOINT threads each would hold all 8; the quick endpoint,
    standing later on the fair_at clock, still gets the quarter kept for the others."""
    now = datetime.now(UTC)
    hanging = [uuid.uuid4() for _ in range(4)]
    quick = uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.slow.update(hanging)
    fresh.quick.add(quick)
    fresh.add([_claim(e, now + timedelta(milliseconds=i)) for i in range(5) for e in hanging])
    fresh.add([_claim(quick, now + timedelta(seconds=1 + i)) for i in range(5)])

    taken = [_started(fresh) for _ in range(8)]

    assert [c.endpoint.pk for c in taken].count(quick) == 2
    assert sum(fresh.busy[e] for e in hanging) == 6
    fresh.busy[quick] -= 1  # a quick send ends: its thread goes to the quick lane again
    assert _started(fresh).endpoint.pk == quick


def test_two_new_endpoints_that_hang_hold_half_the_threads() -> None:
    """Before any endpoint answered in this round each gets a quarter of the threads: two new
    receivers that never answer cannot take all eight before they are found slow."""
    now = datetime.now(UTC)
    new = [uuid.uuid4() for _ in range(2)]
    other = uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.add([_claim(e, now + timedelta(milliseconds=i)) for i in range(5) for e in new])
    fresh.add([_claim(other, now + timedelta(seconds=1))])

    taken = [_started(fresh) for _ in range(5)]

    assert [fresh.busy[e] for e in new] == [2, 2]
    assert taken[-1].endpoint.pk == other


def test_a_slow_endpoint_given_back_for_the_full_pool_is_claimed_for_once_there_is_room(
    monkeypatch: Any,
) -> None:
    """Three hanging endpoints hold the slow ones' six threads; a fourth slow endpoint's claim
    is given back (not left waiting in its lane) and claimed for again as soon as a slow thread
    comes free, not only when a send of its own ends (it has none in flight)."""
    released: list[Any] = []
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sending.services, "deliveries_release", released.extend)

    def claim_due(**kwargs: Any) -> list[Any]:
        calls.append(kwargs)
        return []

    monkeypatch.setattr(sending.services, "deliveries_claim_due", claim_due)
    monkeypatch.setattr(sending, "_slow_until", {})  # no slow endpoint from earlier tests
    hanging = [uuid.uuid4() for _ in range(3)]
    waiting = uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.slow.update([*hanging, waiting])
    for endpoint in hanging:
        fresh.busy[endpoint] = sending.PER_ENDPOINT
    queued = _claim(waiting, datetime.now(UTC))
    fresh.add([queued])

    fresh.tend()

    assert released == [queued] and waiting not in fresh.lanes
    fresh.claim()  # the pool is still full: nothing claimed for it yet
    assert not [c for c in calls if c.get("only_endpoints")]
    fresh.busy[hanging[0]] -= 1  # a hanging send reached its deadline
    fresh.claim()
    assert [c["only_endpoints"] for c in calls if c.get("only_endpoints")] == [[waiting]]
