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


def test_an_endpoint_quick_again_or_long_forgotten_starts_with_every_thread() -> None:
    quick, old = uuid.uuid4(), uuid.uuid4()
    sending._remember_slow(quick, True)
    sending._remember_slow(quick, False)  # it answered quickly since
    sending._remember_slow(old, True)
    sending._slow_until[old] = time.monotonic() - 1  # remembered past SLOW_REMEMBERED

    fresh = sending._Round(senders=8, stop_at=time.monotonic() + 5)

    assert quick not in fresh.slow and old not in fresh.slow
    assert fresh.cap(quick) == 8
    assert old not in sending._slow_until
