"""``/healthz``: can this web process serve (the database), and is the broker reachable?

Anyone (the load balancer) gets the status and which check failed; the failure's text (an
exception naming hosts, ports, users) only goes to staff signed in to the admin or a caller with
``Authorization: Bearer <JOBTRAIL_OPS_TOKEN>``, and to the log.
"""

import hmac
import logging
import math
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from .celery_app import app as celery_app

logger = logging.getLogger(__name__)


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


# How long the broker check waits for the broker to connect, and then to answer (one retry:
# about twice this at most). A broker that accepts connections but does not answer (a frozen
# Redis: the kernel still completes the handshake) held the check for the transport's 10 s read
# timeouts, again and again, past load balancers' check timeouts (1-5 s): every web host would
# leave rotation for a broker outage the web survives.
BROKER_CHECK_TIMEOUT = 1.0
# the read and connect timeouts of the Redis transport (redis-py) and of RabbitMQ's (py-amqp);
# each transport ignores the other's
_CHECK_TRANSPORT_OPTIONS = {
    "socket_timeout": BROKER_CHECK_TIMEOUT,
    "socket_connect_timeout": BROKER_CHECK_TIMEOUT,
    "read_timeout": BROKER_CHECK_TIMEOUT,
    "write_timeout": BROKER_CHECK_TIMEOUT,
}


def _broker() -> str:
    with celery_app.connection_for_write(
        connect_timeout=BROKER_CHECK_TIMEOUT, transport_options=_CHECK_TRANSPORT_OPTIONS
    ) as conn:
        # one retry at once (the default waits 2 s before it)
        conn.ensure_connection(
            max_retries=1, interval_start=0, timeout=math.ceil(2 * BROKER_CHECK_TIMEOUT)
        )
        if conn.transport.driver_type == "redis":
            # a Redis connection is opened lazily: ask the server to answer
            channel: Any = conn.default_channel
            channel.client.ping()
    return "ok"


def _may_see_detail(request: HttpRequest) -> bool:
    token: str = settings.JOBTRAIL_OPS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    details: dict[str, str] = {}
    for name, check in (("database", _database), ("broker", _broker)):
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = "error"
            details[name] = f"error: {type(exc).__name__}: {exc}"[:300]
            logger.warning("healthz: %s %s", name, details[name])
    # The web serves without the broker (job changes wait in the event log, the sweeps send
    # their wake-ups once it is back): a broker outage is "degraded", still 200, so a load
    # balancer keeps the web tier in rotation; without the database it cannot answer (503).
    serving = checks["database"] == "ok"
    status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    if details and _may_see_detail(request):
        checks.update(details)
    response = JsonResponse(
        {"status": status if serving else "unavailable", "checks": checks},
        status=200 if serving else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
