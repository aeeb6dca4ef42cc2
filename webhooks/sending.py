"""Send claimed deliveries over HTTP: signed, pinned to the checked address, no redirects.

Every attempt ends by a hard deadline (``JOBTRAIL_WEBHOOK_TIMEOUT`` from its claim) covering the
DNS and SSRF check, connect, TLS, sending and the whole answer: urllib3's read timeout is per
read, so a receiver dripping a byte every second would otherwise hold the sender for ever. Each
phase gets the time that is left as its socket timeout, and a watchdog shuts the connection's
socket down at the deadline, which ends whatever read or write is blocked on it.
"""

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import urllib3
from django.conf import settings
from django.db import connection
from django.utils import timezone
from urllib3.connection import HTTPConnection, HTTPSConnection

from . import services
from .services import AttemptResult, Claim
from .ssrf import Target, UnsafeTarget, check_url

logger = logging.getLogger(__name__)

USER_AGENT = "Jobtrail-Webhooks/1.0"
# A batch sender gives one endpoint at most this many of its threads while other endpoints'
# deliveries are due (one slow receiver cannot take every thread).
PER_ENDPOINT = 2


# What a receiver can make a send raise. Anything else (Celery's SoftTimeLimitExceeded, a bug)
# propagates: ``deliver_claimed`` records the attempt as interrupted and re-raises it.
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)


class AttemptTimeout(Exception):
    """The attempt's deadline passed; the message says in which phase."""


class _Watchdog:
    """Shut a connection's socket down at the deadline, whatever is blocked on it.

    It holds a duplicate of the TCP socket (taken right after connect, before TLS wraps it), so
    shutting down reaches the connection however it is wrapped, and the descriptor it acts on
    is its own (never one the system has reused for another connection).
    """

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._closed = False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed:
                return
            self._sock = sock.dup()
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class _WatchedHTTPConnection(HTTPConnection):
    watchdog: _Watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.watchdog.watch(sock)
        return sock


class _WatchedHTTPSConnection(HTTPSConnection):
    watchdog: _Watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.watchdog.watch(sock)
        return sock


def _remaining(deadline: float, phase: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise AttemptTimeout(phase)
    return left


def _check_within(url: str, deadline: float) -> Target:
    """``check_url`` (name resolution has no timeout of its own) within the deadline."""
    outcome: list[Target | BaseException] = []

    def run() -> None:
        try:
            outcome.append(check_url(url))
        except BaseException as exc:
            outcome.append(exc)

    resolver = threading.Thread(target=run, name="webhook-resolve", daemon=True)
    resolver.start()
    resolver.join(_remaining(deadline, "resolving the host"))
    if not outcome:
        raise AttemptTimeout("resolving the host")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _post(
    target: Target, *, body: bytes, headers: dict[str, str], deadline: float
) -> tuple[int, str, str | None]:
    """POST to the checked address; (status, first 16 KiB of the answer, Retry-After)."""
    address = target.addresses[0]
    timeout = _remaining(deadline, "connecting")
    watchdog = _Watchdog(deadline)
    conn: _WatchedHTTPConnection | _WatchedHTTPSConnection
    if target.scheme == "https":
        conn = _WatchedHTTPSConnection(
            address,
            target.port,
            timeout=timeout,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        conn = _WatchedHTTPConnection(address, target.port, timeout=timeout)
    conn.watchdog = watchdog
    default_port = 443 if target.scheme == "https" else 80
    host = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and target.port == default_port:
        host = f"[{target.host}]"
    phase = "connecting"
    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host},
            preload_content=False,  # read at most RESPONSE_BODY_LIMIT below
        )
        phase = "waiting for the answer"
        conn.timeout = _remaining(deadline, phase)  # getresponse() applies it to the socket
        response = conn.getresponse()
        phase = "reading the answer"
        if conn.sock is not None:  # None when the answer closes the connection
            conn.sock.settimeout(_remaining(deadline, phase))
        content = response.read(services.RESPONSE_BODY_LIMIT, decode_content=True)
        if watchdog.fired:  # cut short by the deadline: the answer is not complete
            raise AttemptTimeout(phase)
        text = content.decode("utf-8", errors="replace")
        return response.status, text, response.headers.get("Retry-After")
    except NETWORK_ERRORS as exc:
        if watchdog.fired or time.monotonic() >= deadline:
            raise AttemptTimeout(phase) from exc
        raise
    finally:
        watchdog.close()
        conn.close()


def _attempt(claim: Claim) -> AttemptResult:
    """Make the HTTP attempt; network failures and timeouts become the result's error."""
    endpoint = claim.endpoint
    delivery = claim.delivery
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    now = timezone.now()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": services.signature_header(
            endpoint, msg_id=delivery.event_id, timestamp=now, body=body
        ),
    }
    started = time.monotonic()

    def failed(error: str) -> AttemptResult:
        duration_ms = int((time.monotonic() - started) * 1000)
        return AttemptResult(started_at=now, duration_ms=duration_ms, error=error[:2000])

    try:
        target = _check_within(endpoint.url, claim.deadline)
        status, text, retry_after = _post(
            target, body=body.encode(), headers=headers, deadline=claim.deadline
        )
    except AttemptTimeout as exc:
        return failed(
            f"Timed out {exc}: the attempt did not finish within "
            f"JOBTRAIL_WEBHOOK_TIMEOUT ({settings.JOBTRAIL_WEBHOOK_TIMEOUT:g} s)."
        )
    except UnsafeTarget as exc:
        return failed(f"Refused by the SSRF guard: {exc}")
    except NETWORK_ERRORS as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    return AttemptResult(
        started_at=now,
        duration_ms=int((time.monotonic() - started) * 1000),
        status_code=status,
        response_body=text,
        retry_after=retry_after,
    )


def deliver_claimed(claim: Claim) -> None:
    """Make the claimed attempt and record it, whatever interrupts it.

    An exception in the middle (the task's soft time limit, a bug) still records the attempt
    (with what was known) before it propagates, so the delivery is retried on its schedule
    instead of waiting, unlogged, for its lease to end.
    """
    endpoint = claim.endpoint
    if not endpoint.is_active:
        if endpoint.disabled_reason:  # disabled by the receiver (410): give up
            services.delivery_abandon(claim=claim, reason=endpoint.disabled_reason)
        else:  # paused by the client: hold it until the endpoint is active again
            services.delivery_defer(claim=claim)
        return
    started_at = timezone.now()
    started = time.monotonic()
    result: AttemptResult | None = None
    try:
        result = _attempt(claim)
        services.delivery_record_attempt(claim=claim, result=result)
    except BaseException as exc:
        if result is None:
            result = AttemptResult(
                started_at=started_at,
                duration_ms=int((time.monotonic() - started) * 1000),
                error=f"The attempt was interrupted ({type(exc).__name__}: {exc})."[:2000],
            )
        try:
            services.delivery_record_attempt(claim=claim, result=result)
        except Exception:
            logger.exception(
                "attempt %s of delivery %s not recorded; it is retried when its lease ends",
                claim.number,
                claim.delivery.pk,
            )
        raise


def deliver(delivery_id: Any) -> None:
    """Make one attempt at a due delivery, if nobody else is making it."""
    claim = services.delivery_claim(delivery_id=delivery_id)
    if claim is not None:
        deliver_claimed(claim)


def _deliver_in_thread(claim: Claim) -> None:
    try:
        deliver_claimed(claim)
    finally:
        connection.close()  # this thread's own connection


def send_due(*, budget: float) -> int:
    """Send due deliveries with a few threads for ``budget`` seconds; return how many were sent.

    A delivery is claimed only when a thread is free to send it at once, so its lease (longer
    than the send deadline) runs while it is sent, never while it waits. While other endpoints'
    deliveries are due an endpoint gets at most ``PER_ENDPOINT`` threads; alone, it gets them
    all. When the budget is used up and deliveries are still due, another wake-up is queued
    (behind the messages already waiting), so one backlog does not hold a worker process.
    """
    senders = max(int(settings.JOBTRAIL_WEBHOOK_SENDERS), 1)
    stop_at = time.monotonic() + budget
    in_flight: dict[Future[None], Any] = {}
    busy: Counter[Any] = Counter()
    sent = 0
    with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="webhook-sender") as pool:
        while True:
            free = senders - len(in_flight)
            if free and time.monotonic() < stop_at:
                crowded = [endpoint for endpoint, n in busy.items() if n >= PER_ENDPOINT]
                claims = services.deliveries_claim_due(limit=free, skip_endpoints=crowded)
                if crowded and len(claims) < free:  # nobody else waits: use the free threads
                    claims += services.deliveries_claim_due(limit=free - len(claims))
                for claim in claims:
                    in_flight[pool.submit(_deliver_in_thread, claim)] = claim.endpoint.pk
                    busy[claim.endpoint.pk] += 1
                sent += len(claims)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                endpoint_id = in_flight.pop(future)
                busy[endpoint_id] -= 1
                if future.exception() is not None:
                    logger.error("webhook send failed", exc_info=future.exception())
    if time.monotonic() >= stop_at and services.due_deliveries_exist():
        services.wakeup_send()
    return sent
