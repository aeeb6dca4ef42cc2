"""CPU bursts in place of company A, to measure the machine's floor for the noisy neighbour.

    python bench/burn.py SECONDS PERIOD      # SECONDS of CPU at the start of every PERIOD

`make bench` with ``BENCH_NOISY_A=cpu`` or ``cpu-idle`` starts one of these per core instead of
company A: each burst is A's CPU (``BENCH_NOISY_A_CPU`` core-seconds per A job, spread over the
cores) at A's arrivals, counted in CPU time (a burst the machine slows takes longer, as A's
work would), and it shares nothing with Jobtrail (no database, no broker, no socket).
The work is Python like the worker's (JSON encoding and decoding, hashing) over about a
megabyte of data, so it takes the caches as A's work does. Under ``cpu-idle`` the harness
starts it under Linux's ``SCHED_IDLE``: a waking request takes the core from it at once. B's
tail beside it is then the least any design could reach on this machine for A's load: the
cost of A's cycles alone, whatever their priority and wherever the work is done.
"""

import hashlib
import json
import random
import sys
import time


def main() -> None:
    burst, period = float(sys.argv[1]), float(sys.argv[2])
    rows = [
        {"id": n, "name": f"endpoint-{n:05d}", "values": [random.random() for _ in range(20)]}
        for n in range(2000)
    ]
    start, ticks = time.monotonic(), 0
    while True:
        time.sleep(max(0.0, start + ticks * period - time.monotonic()))
        end = time.process_time() + burst  # CPU time: a burst is A's work, however long it takes
        while time.process_time() < end:
            first = random.randrange(0, len(rows) - 200)
            body = json.dumps(rows[first : first + 200]).encode()
            hashlib.sha256(body).hexdigest()
            json.loads(body)
        # the next arrival (a burst that overran skips the arrivals it covered)
        ticks = max(ticks + 1, int((time.monotonic() - start) / period) + 1)


if __name__ == "__main__":
    main()
