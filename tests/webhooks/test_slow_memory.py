"""A sender round starts an endpoint an earlier round found slow at PER_ENDPOINT threads."""

import time
import uuid

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
