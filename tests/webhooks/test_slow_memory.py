"""A sender round starts an endpoint an earlier round found slow at PER_ENDPOINT threads."""

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
    assert fresh.cap(quick) == 4  # half the threads until it answers in this round
    assert old not in sending._slow_until


def test_an_endpoint_alone_gets_every_thread_only_once_it_answered_quickly() -> None:
    """Each worker process learns on its own: an endpoint nobody has heard from, alone in a
    round, never takes every thread (two processes would give a hanging receiver all 16)."""
    endpoint = uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.lanes[endpoint] = sending.deque()

    assert fresh.cap(endpoint) == 4
    fresh.quick.add(endpoint)  # what a sender thread does after an answer within SLOW_AFTER
    assert fresh.cap(endpoint) == 8


def _claim(endpoint: uuid.UUID, fair_at: datetime) -> Any:
    """What a round reads of a claim: its endpoint (active), its delivery's fair_at, start_by."""
    return SimpleNamespace(
        endpoint=SimpleNamespace(pk=endpoint, is_active=True),
        delivery=SimpleNamespace(fair_at=fair_at),
        start_by=time.monotonic() + 60,
    )


def test_a_quiet_companys_claim_goes_before_a_bursts_later_lanes() -> None:
    """A burst of one company's deliveries waits in the lanes (fair_at 10 ms apart); a quiet
    company's delivery claimed after it, with an earlier fair_at, is sent before the burst's
    later ones, not after the whole burst."""
    now = datetime.now(UTC)
    burst = [uuid.uuid4() for _ in range(50)]
    quiet, late = uuid.uuid4(), uuid.uuid4()
    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)
    fresh.add([_claim(e, now + timedelta(milliseconds=10 * i)) for i, e in enumerate(burst)])
    assert list(fresh.turns) == burst  # in fair_at order, each appended

    fresh.add([_claim(quiet, now + timedelta(milliseconds=5)), _claim(late, now + timedelta(1))])

    turns = list(fresh.turns)
    assert turns.index(quiet) == 1  # after the burst's first (0 ms), before its second (10 ms)
    assert turns[-1] == late  # a later one still waits its turn at the end
    assert fresh._take().endpoint.pk == burst[0]  # type: ignore[union-attr]
    assert fresh._take().endpoint.pk == quiet  # type: ignore[union-attr]
