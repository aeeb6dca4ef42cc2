"""The webhook baseline: one Python loop posting signed bodies with urllib3 (keep-alive).

    python bench/rawclient.py http://127.0.0.1:8700/raw/0 bodies.json N

Reads a JSON list of bodies, posts N of them (cycling) to the URL one after another, each
signed the way a webhook is (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` over a fresh message id), on one persistent connection, and prints
``{"sent": N, "seconds": S, "per_second": R, "non_2xx": E}`` as JSON. It is what a sender
costs when it does nothing but sign and send: the ceiling the delivery engine is compared to.
"""

import json
import sys
import time
import uuid
from datetime import UTC, datetime

import urllib3
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_" + "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2g="


def main() -> None:
    url, bodies_file, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(bodies_file) as f:
        bodies: list[str] = json.load(f)
    if not bodies:
        raise SystemExit("no bodies to send")
    signer = Webhook(SECRET)
    pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(10))
    non_2xx = 0
    start = time.perf_counter()
    for i in range(count):
        body = bodies[i % len(bodies)]
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "Jobtrail-Webhooks/1.0",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(msg_id=msg_id, timestamp=now, data=body),
        }
        response = pool.request(
            "POST", url, body=body.encode(), headers=headers, redirect=False, preload_content=True
        )
        if not 200 <= response.status < 300:
            non_2xx += 1
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"sent": count, "seconds": seconds, "per_second": count / seconds, "non_2xx": non_2xx}
        )
    )


if __name__ == "__main__":
    main()
