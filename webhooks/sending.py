"""The delivery engine: claimed deliveries go out signed, over kept-alive pinned connections.

Shape. ``send_due`` (the task ``webhooks.send_due_deliveries``) runs in a worker process for a
round: its thread (the coordinator) claims due deliveries in batches (``deliveries_claim_due``:
two queries per batch), hands them to a few sender threads, and writes what came back in
batches (``deliveries_record_attempts``: one INSERT of attempts, one UPDATE per distinct
outcome). The sender threads only do HTTP; they never touch the database, so a batch costs the
same few queries whether it holds 1 delivery or 200, and the coordinator's one connection lives
for the whole round (Celery's Django fixup closes connections around every task: one task is
many thousands of deliveries).

Threads, not asyncio. The work per attempt is short CPU bursts (JSON, HMAC, http.client) around
blocking socket waits, which the GIL releases; threads keep the attempt code plain, synchronous,
and the same for the per-delivery task and the batch, and they reuse urllib3's connection
classes (TLS, SNI, hostname checks) and the socket-level deadline watchdog below as they are.
An asyncio engine would need a second HTTP client stack (aiohttp/httpx) for the same sends and
an event loop inside prefork children, for no gain on a bounded number of concurrent sends
(JOBTRAIL_WEBHOOK_SENDERS per process): throughput comes from kept-alive connections and
batched database work, not from thousands of sockets in flight.

Connections. Each process keeps idle HTTP/1.1 connections per (scheme, host, port, checked
address) and reuses them across attempts and rounds. The URL is resolved and SSRF-checked when
first used and again every ``TARGET_RECHECK`` seconds; a connection always goes to the address
that was checked (no second lookup an attacker could rebind), with the URL's host as the TLS
server name and certificate hostname. Redirects are never followed, at most 16 KiB of an answer
is read, and a connection is kept only when its answer was read to the end, in time.

Deadline. Every attempt ends by a hard deadline (``JOBTRAIL_WEBHOOK_TIMEOUT`` from its start)
covering the DNS and SSRF check, connect, TLS, sending and the whole answer: urllib3's read
timeout is per read, so a receiver dripping a byte every second would otherwise hold the sender
for ever. Each phase gets the time that is left as its socket timeout, and one watchdog thread
per process shuts the connection's socket down at the deadline, which ends whatever read or
write is blocked on it. A connection whose attempt hit the deadline is closed, never reused.

Fairness. Deliveries wait in one lane per endpoint; a free sender thread takes the lane whose
next delivery stands earliest on the ``fair_at`` clock (the fan-out spaces each company's
deliveries on it, so companies take turns, and a quiet company's delivery goes before a burst's
later ones however many endpoints the burst spans), within each endpoint's cap of threads, so a
big backlog for one endpoint does not starve another. An endpoint whose attempt runs longer
than ``SLOW_AFTER`` is slow: it gets at most ``PER_ENDPOINT`` threads, its waiting deliveries
are given back unsent, and it is claimed for separately, only as its threads come free. A
hanging receiver therefore holds ``PER_ENDPOINT`` threads per process, and no send to a slow
endpoint starts while slow endpoints together hold three quarters of them; the others keep
sending. An endpoint that has not answered quickly in this round yet gets a quarter of the
threads (so two new receivers that hang hold half of them until found slow).
The process remembers a slow endpoint for ``SLOW_REMEMBERED`` seconds, so a new round does not
give it every thread again before it proves slow once more.

Feeding. While a round runs it holds a worker slot; with every slot held by rounds (the
Procfile's two processes under load) the relay's own wake-up waits behind them and no new
event becomes a delivery: the rounds drain the backlog, then the relay runs, in waves. So on
PostgreSQL a round relays new events itself: a feeder thread runs the relay's batch
(``hooks.relay_batch``, SKIP LOCKED beside any relay task) every ``FEED_EVERY`` seconds, on its
own connection, and right after each batch claims ``TOP_UP`` itself, on the same connection,
however full the lanes are: new deliveries never wait for the lanes' backlog to run low, nor
for the coordinator, whose thread may be recording a burst's outcomes. Those another process
relayed, the coordinator looks for every ``JUMP_EVERY`` (the due ones standing before the
lanes' last claim). (On SQLite, whose writers take turns, the relay task does it alone.)
"""

import contextlib
import heapq
import http.client
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import urllib3
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection
from django.utils import timezone
from urllib3.connection import HTTPConnection, HTTPSConnection

from config.outage import DATABASE_ERRORS, Outage

from . import hooks, lanes, services
from .services import AttemptResult, Claim
from .ssrf import Target, UnsafeTarget, check_url

logger = logging.getLogger(__name__)

USER_AGENT = "Jobtrail-Webhooks/1.0"
# While other endpoints' deliveries wait, a slow endpoint gets at most this many sender threads
# of a process (one hanging receiver cannot take every thread).
PER_ENDPOINT = 2
# An endpoint is slow once one of its attempts has run this long (or ended by the deadline).
SLOW_AFTER = 1.0
# A slow endpoint is remembered this long by the process, so the next round starts it at
# PER_ENDPOINT threads instead of learning it again with every thread it has.
SLOW_REMEMBERED = 60.0
# A URL's resolution and SSRF check are trusted this long; then they are done again.
TARGET_RECHECK = 60.0
# Idle connections kept per (scheme, host, port, address).
IDLE_PER_ORIGIN = 16
# The coordinator claims up to this many deliveries per batch...
BATCH = 100
# ...and records outcomes when this many wait, or after FLUSH_EVERY seconds.
FLUSH_SIZE = 200
FLUSH_EVERY = 0.05
# When a claim finds nothing due, the next one waits this long (a round keeps sending as long as
# deliveries come due; an empty table is not asked again and again).
IDLE_CLAIM_EVERY = 0.2
# The round's feeder thread looks for new job events to relay this often (PostgreSQL).
FEED_EVERY = 0.05
# After each batch it relays, the feeder claims this many at once, however full the lanes are (the
# new deliveries stand early on the fair_at clock: a quiet company's go before the lanes'
# backlog instead of waiting for the lanes to run low); a small claim is a quick one.
TOP_UP = 16
# While the lanes are full, the coordinator looks this often for due deliveries standing earlier
# on the fair_at clock than the last one it holds (another process's relay made them, or a retry
# came due): they go before the lanes' backlog instead of waiting for the lanes to run low.
JUMP_EVERY = 0.05

# What a lost database connection raises (a PostgreSQL restart, a failover, a deadlock abort):
# the coordinator reconnects and carries on instead of ending the round, and records what its
# senders sent once the database answers again (while their leases last, within its time).
CONNECTION_ERRORS = DATABASE_ERRORS
# First wait before trying the database again; doubled up to RECONNECT_WAIT_MAX.
RECONNECT_WAIT = 0.25
RECONNECT_WAIT_MAX = 2.0
# A record or release is tried again while the claims' leases last (an attempt whose outcome
# is not recorded is sent again after its lease, and counts as one of its schedule's attempts).
# A round stops trying this long before its soft time limit (JOBTRAIL_WEBHOOK_ROUND_TIME_LIMITS:
# ROUND + D + 10 s; a round ends its last sends by ROUND + D, then gives back and records).
RECORD_MARGIN = 3.0

# What a receiver can make a send raise. Anything else (Celery's SoftTimeLimitExceeded, a bug)
# propagates: it is recorded as an interrupted attempt and re-raised.
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError)
# What a kept-alive connection the receiver closed while it was idle raises on reuse.
STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class AttemptTimeout(Exception):
    """The attempt's deadline passed; the message says in which phase."""


# Phases in which a deadline means no connection was made (the receiver is unreachable); in
# the others the receiver was connected but gave no complete answer in time.
CONNECT_PHASES = frozenset({"resolving the host", "connecting"})


# --- the deadline watchdog --------------------------------------------------------------------


class _Watch:
    """One attempt's deadline: shuts its connection's socket down if the deadline passes."""

    __slots__ = ("_conn", "_done", "_lock", "deadline", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self._conn: _PinnedConnection | None = None
        self._done = False
        self._lock = threading.Lock()

    def __lt__(self, other: "_Watch") -> bool:
        return self.deadline < other.deadline

    def attach(self, conn: "_PinnedConnection") -> None:
        with self._lock:
            if self._done:
                return
            self._conn = conn
            if self.fired:
                conn.shut_down()

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._conn is not None:
                self._conn.shut_down()

    def close(self) -> None:
        """The attempt is over: the watchdog leaves its connection alone from now on."""
        with self._lock:
            self._done = True
            self._conn = None


class _Watchdog:
    """One thread per process that fires the attempts' deadlines (no thread per attempt)."""

    GRANULARITY = 0.05  # deadlines fire at most this late; the thread wakes at most 20 times/s

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[_Watch] = []
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> _Watch:
        watch = _Watch(deadline)
        with self._cond:
            heapq.heappush(self._heap, watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhook-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0] is watch:
                self._cond.notify()
        return watch

    def _run(self) -> None:
        while True:
            due: list[_Watch] = []
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                now = time.monotonic()
                while self._heap and self._heap[0].deadline <= now:
                    due.append(heapq.heappop(self._heap))
                if not due:
                    wait = max(self._heap[0].deadline - now, self.GRANULARITY)
                    self._cond.wait(wait)
            for watch in due:
                watch.fire()


# --- pinned, kept-alive connections -----------------------------------------------------------


class _PinnedConnection:
    """Mixin: keeps a duplicate of the TCP socket for the watchdog; attaches the watch on connect.

    The duplicate is taken right after connect, before TLS wraps the socket, so shutting it down
    reaches the connection however it is wrapped, and the descriptor it acts on is its own for
    the connection's whole life (never one the system has reused for another connection).
    """

    watch: _Watch | None = None
    _watch_sock: socket.socket | None = None
    last_used: float = 0.0

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        self._watch_sock = sock.dup()
        if self.watch is not None:
            self.watch.attach(self)
        return sock

    def shut_down(self) -> None:
        sock = self._watch_sock
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    def discard(self) -> None:
        """Close the connection for good (``close``, which http.client also calls when an
        answer ends the connection, leaves the duplicate: the answer may still be read)."""
        self.close()  # type: ignore[attr-defined]
        sock, self._watch_sock = self._watch_sock, None
        if sock is not None:
            sock.close()


class _PinnedHTTPConnection(_PinnedConnection, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


Conn = _PinnedHTTPConnection | _PinnedHTTPSConnection


@dataclass
class _Origin:
    """Idle connections to one checked address of one (scheme, host, port)."""

    scheme: str
    host: str
    port: int
    address: str
    idle: list[Conn] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> Conn | None:
        """A kept-alive connection the receiver has not closed meanwhile, or None."""
        while True:
            with self.lock:
                if not self.idle:
                    return None
                conn = self.idle.pop()  # the most recently used: least likely to be closed
            if conn.is_connected:  # readable while idle means closed by the receiver
                return conn
            conn.discard()

    def new(self) -> Conn:
        if self.scheme == "https":
            return _PinnedHTTPSConnection(
                self.address,
                self.port,
                server_hostname=self.host,
                assert_hostname=self.host,
                cert_reqs="CERT_REQUIRED",
            )
        return _PinnedHTTPConnection(self.address, self.port)

    def give_back(self, conn: Conn) -> None:
        conn.watch = None
        conn.last_used = time.monotonic()
        with self.lock:
            if len(self.idle) < IDLE_PER_ORIGIN:
                self.idle.append(conn)
                return
        conn.discard()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.discard()


@dataclass(frozen=True)
class _Checked:
    target: Target
    at: float


class Transport:
    """A process's webhook HTTP client: checked targets and kept-alive connections."""

    def __init__(self) -> None:
        self.watchdog = _Watchdog()
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, bool, bool], _Checked] = {}
        self._origins: dict[tuple[str, str, int, str], _Origin] = {}

    def close(self) -> None:
        with self._lock:
            origins, self._origins = list(self._origins.values()), {}
            self._targets = {}
        for origin in origins:
            origin.close()

    # --- resolution and SSRF check ------------------------------------------------------------

    def target(self, url: str, deadline: float) -> Target:
        """The URL's checked target, checked again once older than ``TARGET_RECHECK``."""
        key = (url, bool(settings.DEBUG), bool(settings.JOBTRAIL_WEBHOOK_ALLOW_PRIVATE_TARGETS))
        checked = self._targets.get(key)
        now = time.monotonic()
        if checked is not None and now - checked.at < TARGET_RECHECK:
            return checked.target
        target = _check_within(url, deadline)
        with self._lock:
            if checked is not None and checked.target.addresses != target.addresses:
                # the name points elsewhere now: drop the connections to the old addresses
                gone = {a for a in checked.target.addresses if a not in target.addresses}
                stale = [k for k in self._origins if k[1] == target.host and k[3] in gone]
                for origin_key in stale:
                    self._origins.pop(origin_key).close()
            self._targets[key] = _Checked(target=target, at=now)
        return target

    def origin(self, target: Target) -> _Origin:
        key = (target.scheme, target.host, target.port, target.addresses[0])
        origin = self._origins.get(key)
        if origin is None:
            with self._lock:
                origin = self._origins.setdefault(key, _Origin(*key))
        return origin

    # --- one POST -----------------------------------------------------------------------------

    def post(
        self, target: Target, *, body: bytes, headers: dict[str, str], deadline: float
    ) -> "Answer":
        """POST to the checked address; the status, first 16 KiB and headers of the answer.

        A kept-alive connection the receiver closed just as it was reused fails before any
        answer: the request is then sent once more on a new connection, within the deadline.
        """
        origin = self.origin(target)
        conn = origin.take()
        if conn is not None:
            try:
                return self._exchange(origin, conn, target, body, headers, deadline)
            except STALE_CONNECTION:
                if time.monotonic() >= deadline:
                    raise
        return self._exchange(origin, origin.new(), target, body, headers, deadline)

    def _exchange(
        self,
        origin: _Origin,
        conn: Conn,
        target: Target,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
    ) -> "Answer":
        watch = self.watchdog.watch(deadline)
        conn.watch = watch
        if conn.sock is not None:  # kept alive: the watch covers it from now on
            watch.attach(conn)
        keep = False
        phase = "connecting" if conn.sock is None else "sending"
        try:
            conn.timeout = _remaining(deadline, phase)  # request() applies it to the socket
            conn.request(
                "POST",
                target.path,
                body=body,
                headers=headers,
                preload_content=False,  # read at most RESPONSE_BODY_LIMIT below
            )
            phase = "waiting for the answer"
            conn.timeout = _remaining(deadline, phase)  # getresponse() applies it to the socket
            response = conn.getresponse()
            phase = "reading the answer"
            if conn.sock is not None:  # None when the answer closes the connection
                conn.sock.settimeout(_remaining(deadline, phase))
            try:
                content = response.read(services.RESPONSE_BODY_LIMIT, decode_content=True)
                # the answer was read to its end (and in time): the connection may carry the next
                complete = len(content) < services.RESPONSE_BODY_LIMIT or response.read(1) == b""
            except NETWORK_ERRORS as exc:
                if watch.fired or time.monotonic() >= deadline:
                    raise
                # the status came, the body stopped short (the connection closed before its
                # Content-Length): the status is the receiver's answer; the body only informs
                note = f"(the answer's body was cut short: {type(exc).__name__})"
                return Answer(response.status, note, response.headers)
            if watch.fired:  # cut short by the deadline: the answer is not complete
                raise AttemptTimeout(phase)
            keep = complete and conn.sock is not None
            text = content.decode("utf-8", errors="replace")
            return Answer(response.status, text, response.headers)
        except NETWORK_ERRORS as exc:
            if watch.fired or time.monotonic() >= deadline:
                raise AttemptTimeout(phase) from exc
            raise
        finally:
            watch.close()
            if keep and not watch.fired:
                origin.give_back(conn)
            else:
                conn.discard()


@dataclass
class Answer:
    status: int
    text: str
    headers: Any  # urllib3's HTTPHeaderDict: read only for what an attempt logs

    @property
    def retry_after(self) -> str | None:
        value: str | None = self.headers.get("Retry-After")
        return value


def _host_header(target: Target) -> str:
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default_port else f"{host}:{target.port}"


_transport: Transport | None = None
_transport_lock = threading.Lock()


def transport() -> Transport:
    """This process's transport (a prefork child gets its own: connections are not shared)."""
    global _transport
    if _transport is None:
        with _transport_lock:
            if _transport is None:
                _transport = Transport()
    return _transport


def reset_connections() -> None:
    """Close every kept-alive connection and forget every checked target."""
    global _transport
    with _transport_lock:
        old, _transport = _transport, None
    if old is not None:
        old.close()


def _forget_after_fork() -> None:
    global _transport, _executor, _coordinating
    _transport = None  # the parent's sockets and threads are not ours
    _executor = None
    _coordinating = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


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
            outcome.append(check_url(url, own_lookup_timeout=False))
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


# --- one attempt ------------------------------------------------------------------------------


def attempt(claim: Claim, *, deadline: float) -> AttemptResult:
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

    def failed(error: str, kind: str = hooks.UNREACHABLE) -> AttemptResult:
        duration_ms = int((time.monotonic() - started) * 1000)
        return AttemptResult(
            started_at=now,
            duration_ms=duration_ms,
            error=error[:2000],
            error_kind=kind,
            # logged once the request went to a checked address (not for a refused target)
            request_headers=services.headers_as_sent(headers) if "Host" in headers else {},
        )

    try:
        client = transport()
        target = client.target(endpoint.url, deadline)
        encoded = body.encode()
        headers["Content-Length"] = str(len(encoded))
        headers["Host"] = _host_header(target)
        answer = client.post(target, body=encoded, headers=headers, deadline=deadline)
    except AttemptTimeout as exc:
        return failed(
            f"Timed out {exc}: the attempt did not finish within "
            f"JOBTRAIL_WEBHOOK_TIMEOUT ({settings.JOBTRAIL_WEBHOOK_TIMEOUT:g} s).",
            hooks.UNREACHABLE if str(exc) in CONNECT_PHASES else hooks.TIMEOUT,
        )
    except UnsafeTarget as exc:
        return failed(f"Refused by the SSRF guard: {exc}")
    except NETWORK_ERRORS as exc:
        # a read that timed out: connected, no answer in time; anything else: no connection
        # (refused, reset, DNS, TLS) or no usable answer on it
        timed_out = isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError)
        return failed(
            f"{type(exc).__name__}: {exc}", hooks.TIMEOUT if timed_out else hooks.UNREACHABLE
        )
    return AttemptResult(
        started_at=now,
        duration_ms=int((time.monotonic() - started) * 1000),
        status_code=answer.status,
        response_body=answer.text,
        retry_after=answer.retry_after,
        request_headers=services.headers_as_sent(headers),
        response_headers=services.headers_as_received(answer.headers.items()),
    )


def _interrupted(started_at: Any, started: float, exc: BaseException) -> AttemptResult:
    return AttemptResult(
        started_at=started_at,
        duration_ms=int((time.monotonic() - started) * 1000),
        error=f"The attempt was interrupted ({type(exc).__name__}: {exc})."[:2000],
    )


def _reconnecting(action: Any, *, until: float, what: str) -> None:
    """Run the database ``action(again)``; while the connection is lost, reconnect and run it
    again (``again=True``: the last try may have committed before its answer was lost),
    waiting longer each time, while a try can start before ``until`` (``time.monotonic()``: the
    leases of the claims it is about, or the round's time). Then the last error is raised. Any
    other error is raised at once."""
    wait = RECONNECT_WAIT
    again = False
    while True:
        try:
            action(again)
            return
        except CONNECTION_ERRORS as exc:
            connection.close()  # a new connection for the next try
            if time.monotonic() + wait >= until:
                raise
            logger.warning("the database is unavailable (%s); %s again in %.2f s", exc, what, wait)
            time.sleep(wait)
            wait = min(wait * 2, RECONNECT_WAIT_MAX)
            again = True


def _leases_end(claims: Any) -> float:
    """When (``time.monotonic()``) the first of the claims' leases ends, less a second to
    commit in."""
    return min(claim.lease_ends for claim in claims) - 1.0


def _record(outcomes: list[tuple[Claim, AttemptResult]], *, by: float | None = None) -> None:
    """Record a batch of outcomes; while the database is unavailable, again while their leases
    last (``_reconnecting``: what was sent is not sent again for want of a record), or until
    ``by`` (``time.monotonic()``: a round's time); if the batch fails otherwise, each one alone
    (one outcome the database refuses must not undo the others: their deliveries would be
    sent again)."""
    leases_end = _leases_end(claim for claim, _ in outcomes)
    until = leases_end if by is None else min(leases_end, by)
    try:
        _reconnecting(
            lambda again: services.deliveries_record_attempts(outcomes, again=again),
            until=until,
            what=f"recording {len(outcomes)} webhook attempts",
        )
        return
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: its caller records what it can, Celery ends it
    except CONNECTION_ERRORS:
        now = time.monotonic()
        lasting = [o for o in outcomes if _leases_end([o[0]]) > now]
        if lasting and until == leases_end and (by is None or now < by):
            # the earliest lease ended: the others are still this sender's to record
            lost = len(outcomes) - len(lasting)
            logger.error(
                "%d webhook attempts not recorded: the database was unavailable until their "
                "leases ended; their deliveries are sent again",
                lost,
            )
            _record(lasting, by=by)
            return
        logger.exception(
            "%d webhook attempts not recorded: the database was unavailable until %s; "
            "their deliveries are sent again once their leases end",
            len(outcomes),
            "their leases ended" if until == leases_end else "the round's time was up",
        )
        return
    except Exception:
        if len(outcomes) == 1:
            logger.exception(
                "webhook attempt not recorded; its delivery is retried when its lease ends"
            )
            return
        logger.exception("%d webhook attempts not recorded together; one by one", len(outcomes))
    for outcome in outcomes:
        _record([outcome], by=by)


def _settle_inactive(claims: list[Claim]) -> list[Claim]:
    """Defer (paused) or abandon (disabled by a 410) claims of inactive endpoints, abandon
    those whose attempts were used up without outcomes (``used_up_reason``); the rest."""
    reasons = [(c, services.used_up_reason(c)) for c in claims]
    spent: dict[str, list[Claim]] = {}
    for c, reason in reasons:
        if reason:
            spent.setdefault(reason, []).append(c)
    for reason, group in spent.items():
        services.deliveries_abandon(group, reason=reason, error_kind=hooks.NO_OUTCOME)
    if spent:
        claims = [c for c, reason in reasons if not reason]
    active = [c for c in claims if c.endpoint.is_active]
    if len(active) == len(claims):
        return claims
    paused = [c for c in claims if not c.endpoint.is_active and not c.endpoint.disabled_reason]
    services.deliveries_defer(paused)
    disabled: dict[str, list[Claim]] = {}
    for c in claims:
        if not c.endpoint.is_active and c.endpoint.disabled_reason:
            disabled.setdefault(c.endpoint.disabled_reason, []).append(c)
    for reason, group in disabled.items():
        services.deliveries_abandon(group, reason=reason)
    return active


def deliver_claimed(claim: Claim, *, record_by: float | None = None) -> None:
    """Make the claimed attempt now, in this thread, and record it, whatever interrupts it.

    An exception in the middle (the task's soft time limit, a bug) still records the attempt
    (with what was known) before it propagates, so the delivery is retried on its schedule
    instead of waiting, unlogged, for its lease to end.
    """
    if not _settle_inactive([claim]):
        return
    started_at = timezone.now()
    started = time.monotonic()
    try:
        result = attempt(claim, deadline=claim.attempt_deadline(started))
    except BaseException as exc:
        _record([(claim, _interrupted(started_at, started, exc))], by=record_by)
        raise
    _record([(claim, result)], by=record_by)


def deliver(delivery_id: Any) -> None:
    """Make one attempt at a due delivery, if nobody else is making it (the send task: its
    record stops retrying before the task's soft time limit)."""
    soft_limit, _ = settings.JOBTRAIL_WEBHOOK_SEND_TIME_LIMITS
    record_by = time.monotonic() + soft_limit - RECORD_MARGIN
    claim = services.delivery_claim(delivery_id=delivery_id)
    if claim is not None:
        deliver_claimed(claim, record_by=record_by)


# --- the batch sender -------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_coordinating = threading.Lock()  # one batch sender per process at a time


def _sender_threads(count: int) -> ThreadPoolExecutor:
    """The process's sender threads, kept across rounds."""
    global _executor
    if _executor is None or _executor._max_workers != count:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="webhook-sender")
    return _executor


@dataclass
class _Sending:
    claim: Claim
    started: float
    started_at: Any


_slow_until: dict[Any, float] = {}  # endpoint -> until when (monotonic) it counts as slow
_slow_lock = threading.Lock()


def _slow_remembered(now: float) -> set[Any]:
    with _slow_lock:
        for endpoint in [e for e, until in _slow_until.items() if until <= now]:
            del _slow_until[endpoint]
        return set(_slow_until)


def _remember_slow(endpoint: Any, slow: bool) -> None:
    with _slow_lock:
        if slow:
            _slow_until[endpoint] = time.monotonic() + SLOW_REMEMBERED
        else:
            _slow_until.pop(endpoint, None)


class _Round:
    """One batch sender round: lanes per endpoint, sender threads, batched claims and records.

    The sender threads take deliveries from the lanes themselves (in turn, within each
    endpoint's cap) and put their outcomes aside; this thread (the coordinator) only claims
    more before the lanes run dry, records outcomes in batches, watches for slow endpoints and
    gives back claims that cannot start in time. Its database work never holds up the sends.
    """

    def __init__(self, *, senders: int, stop_at: float, work_lane: str = lanes.NARROW) -> None:
        self.senders = senders
        # the companies' lane it works for (``webhooks.lanes``; not its per-endpoint lanes)
        self.work_lane = work_lane
        self.stop_at = stop_at
        self.cond = threading.Condition()
        # guarded by ``cond``:
        self.lanes: dict[Any, deque[Claim]] = {}
        # one entry per lane: (its next delivery's fair_at, tie-breaker, endpoint), earliest first
        self.heads: list[tuple[Any, int, Any]] = []
        self.order = itertools.count()
        self.in_flight: dict[int, _Sending] = {}
        self.busy: Counter[Any] = Counter()
        self.quick: set[Any] = set()  # endpoints that answered within SLOW_AFTER this round
        # endpoints found slow by this process's earlier rounds start slow (claimed for apart,
        # PER_ENDPOINT threads at most) and, as none of their threads is busy, with room
        self.slow: set[Any] = _slow_remembered(time.monotonic())
        self.freed: set[Any] = set(self.slow)  # slow endpoints with room since the last claim
        self.late: list[Claim] = []
        self.outcomes: list[tuple[Claim, AttemptResult]] = []
        self.closing = False
        self.sent = 0
        self.stopping = threading.Event()  # set when the round ends: the feeder stops
        # records and releases stop retrying by then (the round's soft time limit, less a margin)
        soft_limit, _ = settings.JOBTRAIL_WEBHOOK_ROUND_TIME_LIMITS
        past_budget = soft_limit - float(settings.JOBTRAIL_WEBHOOK_ROUND_SECONDS)
        self.record_by = stop_at + past_budget - RECORD_MARGIN
        # the coordinator's own:
        self.last_flush = time.monotonic()
        self.next_claim = 0.0
        self.next_jump = 0.0
        self.next_beat = 0.0  # when to say again that the round is at work (hooks.working)
        self.wakeup_sent = False

    # --- the sender threads -------------------------------------------------------------------

    def cap(self, endpoint: Any) -> int:
        """How many threads an endpoint may have: a quarter of them until it proves quick (each
        worker process learns on its own: never every thread of every process on an endpoint
        nobody has heard from; two new endpoints that hang hold half of them, not all), half
        once quick beside others, all of them once quick and alone, PER_ENDPOINT once slow."""
        if endpoint in self.slow:
            return PER_ENDPOINT
        if endpoint not in self.quick:
            return max(PER_ENDPOINT, self.senders // 4)
        if len(self.lanes) > 1:
            return max(PER_ENDPOINT, self.senders // 2)
        return self.senders

    def slow_full(self) -> bool:
        """Whether slow endpoints together hold every thread they may (all but a quarter, kept
        for the others: several hanging receivers at PER_ENDPOINT each could otherwise hold
        every thread); with ``cond`` held."""
        held = sum(self.busy[endpoint] for endpoint in self.slow)
        return held >= max(1, self.senders - max(1, self.senders // 4))

    def _take(self) -> Claim | None:
        """The next claim to send (the earliest lane head on the ``fair_at`` clock whose endpoint
        has a thread to spare), or None; with ``cond`` held."""
        heads = self.heads
        full: list[tuple[Any, int, Any]] = []  # lanes whose endpoints have every thread they may
        taken = None
        while heads:
            head = heapq.heappop(heads)
            endpoint = head[2]
            if self.busy[endpoint] >= self.cap(endpoint) or (
                endpoint in self.slow and self.slow_full()
            ):
                full.append(head)
                continue
            lane = self.lanes[endpoint]
            claim = lane.popleft()
            if lane:
                self._line_up(endpoint)
            else:
                del self.lanes[endpoint]
            now = time.monotonic()
            if now > claim.start_by or now >= self.stop_at:
                self.late.append(claim)  # given back by the coordinator
                continue
            taken = claim
            break
        for head in full:
            heapq.heappush(heads, head)
        return taken

    def sender(self) -> None:
        me = threading.get_ident()
        while True:
            with self.cond:
                claim = self._take()
                while claim is None:
                    if self.closing:
                        return
                    self.cond.wait(FLUSH_EVERY)
                    claim = self._take()
                endpoint = claim.endpoint.pk
                self.busy[endpoint] += 1
                self.sent += 1
                started = time.monotonic()
                sending = _Sending(claim=claim, started=started, started_at=timezone.now())
                self.in_flight[me] = sending
            try:
                result = attempt(claim, deadline=claim.attempt_deadline(started))
            except BaseException as exc:  # a bug: recorded, never lost
                logger.error("webhook send failed", exc_info=exc)
                result = _interrupted(sending.started_at, started, exc)
            took = time.monotonic() - started
            with self.cond:
                del self.in_flight[me]
                self.busy[endpoint] -= 1
                self.outcomes.append((claim, result))
                if took >= SLOW_AFTER:
                    self.slow.add(endpoint)
                    _remember_slow(endpoint, True)
                elif result.status_code is not None:
                    self.quick.add(endpoint)
                    if endpoint in self.slow:
                        self.slow.discard(endpoint)  # quick again
                        _remember_slow(endpoint, False)
                if endpoint in self.slow:
                    self.freed.add(endpoint)
                self.cond.notify_all()

    # --- the coordinator ----------------------------------------------------------------------

    def queued(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())

    def last_queued(self) -> Any:
        """The latest ``fair_at`` among the claims waiting in the lanes, or None; with ``cond``
        held (each lane is in fair_at order: its last claim is its latest)."""
        return max((lane[-1].delivery.fair_at for lane in self.lanes.values()), default=None)

    def claim(self) -> int | None:
        """Claim more when the lanes run low, or (every ``JUMP_EVERY`` while the lanes are full)
        up to ``TOP_UP`` standing earlier on the ``fair_at`` clock than the lanes' last claim; how
        many, or None when it was not the time. (After a relay the feeder claims itself.)"""
        now = time.monotonic()
        if now >= self.stop_at:
            return None
        with self.cond:
            queued = self.queued()
            # (the lanes' last fair_at only when it is time to look: the loop runs per send)
            last = self.last_queued() if now >= self.next_jump else None
            slow = set(self.slow)
            # slow endpoints with room are claimed for once the slow ones together may take
            # another thread (until then they stay in ``freed``)
            freed: set[Any] = set()
            if not self.slow_full():
                freed, self.freed = self.freed, set()
            room = {e: PER_ENDPOINT - self.busy[e] - len(self.lanes.get(e, ())) for e in freed}
        claimed: int | None = None
        low = queued < BATCH // 2
        if low and now >= self.next_claim:
            want = BATCH - queued
            claims = services.deliveries_claim_due(
                limit=want, skip_endpoints=slow, lane=self.work_lane
            )
            if len(claims) < want:
                self.next_claim = now + IDLE_CLAIM_EVERY
            elif not self.wakeup_sent:
                # a backlog: let another worker process share it (one outstanding wake-up),
                # sent by the process's wake-up thread: a hung broker (up to its 10 s socket
                # timeout) would hold the claims and the outcome records meanwhile
                self.wakeup_sent = True
                services.wakeup_soon(self.work_lane)
            self.add(claims)
            claimed = len(claims)
        elif last is not None:
            # deliveries that stand before the lanes' last one: another process relayed them
            self.next_jump = now + JUMP_EVERY
            claims = services.deliveries_claim_due(
                limit=TOP_UP, skip_endpoints=slow, before=last, lane=self.work_lane
            )
            self.add(claims)
            claimed = len(claims)
        for endpoint, free_threads in room.items():
            if endpoint in slow and free_threads > 0:
                claims = services.deliveries_claim_due(
                    limit=free_threads, only_endpoints=[endpoint], lane=self.work_lane
                )
                self.add(claims)
                claimed = (claimed or 0) + len(claims)
        return claimed

    def add(self, claims: list[Claim]) -> None:
        try:
            claims = _settle_inactive(claims)
        except CONNECTION_ERRORS:
            # claimed, then the connection died: given back untried once the database answers
            # (``tend``), not held until their leases end
            with self.cond:
                self.late.extend(claims)
            raise
        if not claims:
            return
        with self.cond:
            for claim in claims:
                endpoint = claim.endpoint.pk
                lane = self.lanes.get(endpoint)
                if lane is None:
                    self.lanes[endpoint] = deque([claim])
                    self._line_up(endpoint)
                else:
                    lane.append(claim)  # claims come in fair_at order
            self.cond.notify_all()

    def _line_up(self, endpoint: Any) -> None:
        """Put the endpoint's lane among the heads by its next delivery; with ``cond`` held."""
        fair_at = self.lanes[endpoint][0].delivery.fair_at
        heapq.heappush(self.heads, (fair_at, next(self.order), endpoint))

    def tend(self) -> None:
        """Mark endpoints slow whose sends run long; give back what must not start any more."""
        now = time.monotonic()
        with self.cond:
            for sending in self.in_flight.values():
                if now - sending.started >= SLOW_AFTER:
                    self.slow.add(sending.claim.endpoint.pk)
                    _remember_slow(sending.claim.endpoint.pk, True)
            pool_full = self.slow_full()
            waiting = [
                e
                for e in self.lanes
                if e in self.slow and (pool_full or self.busy[e] >= PER_ENDPOINT)
            ]
            late, self.late = self.late, []
            for endpoint in waiting:  # a slow endpoint's backlog waits in the table, not here
                late.extend(self.lanes.pop(endpoint))
                if self.busy[endpoint] < PER_ENDPOINT:  # given back for the pool: claimed again
                    self.freed.add(endpoint)  # when the slow ones together have room
            if waiting:
                self.heads = [head for head in self.heads if head[2] in self.lanes]
                heapq.heapify(self.heads)
        if late:
            try:
                services.deliveries_release(late)
            except CONNECTION_ERRORS:
                with self.cond:
                    self.late.extend(late)  # given back later, or by finish
                raise

    def flush(self, *, force: bool = False) -> None:
        with self.cond:
            due = self.outcomes and (
                force
                or len(self.outcomes) >= FLUSH_SIZE
                or time.monotonic() - self.last_flush >= FLUSH_EVERY
            )
            outcomes, self.outcomes = (self.outcomes, []) if due else ([], self.outcomes)
        if outcomes:
            _record(outcomes, by=self.record_by)
            self.last_flush = time.monotonic()

    def beat(self) -> None:
        """Say the round is at work, every ``JOBTRAIL_HEARTBEAT_INTERVAL`` (its worker's heartbeat
        task may wait behind it in the queue for longer than the heartbeat's limit)."""
        now = time.monotonic()
        if now >= self.next_beat:
            self.next_beat = now + float(settings.JOBTRAIL_HEARTBEAT_INTERVAL)
            hooks.working(lane=self.work_lane)

    def idle(self) -> bool:
        with self.cond:
            return not self.lanes and not self.in_flight

    # --- the feeder -------------------------------------------------------------------------

    def feed(self) -> None:
        """Relay new job events while the round runs (its own thread and connection)."""
        outage = Outage(
            logger,
            down="the database is unavailable (%s); the feeder waits",
            back="the database is back; the feeder relays again",
            first=RECONNECT_WAIT,
            most=RECONNECT_WAIT_MAX,
        )
        pause = FEED_EVERY
        try:
            while not self.stopping.wait(pause):
                try:
                    while not self.stopping.is_set():
                        if not hooks.relay_batch(lane=self.work_lane):  # nothing (more) for now
                            break
                        self.claim_fresh()
                    outage.ok()
                    pause = FEED_EVERY
                except CONNECTION_ERRORS as exc:
                    pause = outage.failed(exc)  # tried again less and less often
                except Exception:
                    logger.exception(
                        "relaying or claiming from the sender round failed; the relay task will"
                    )
                    connection.close()
        finally:
            connection.close()

    def claim_fresh(self) -> None:
        """Claim up to ``TOP_UP`` due deliveries now, however full the lanes are (the feeder,
        right after a relay batch: its new deliveries stand early on the ``fair_at`` clock)."""
        if time.monotonic() >= self.stop_at:
            return
        with self.cond:
            slow = set(self.slow)
        self.add(
            services.deliveries_claim_due(limit=TOP_UP, skip_endpoints=slow, lane=self.work_lane)
        )

    def run(self) -> int:
        threads = _sender_threads(self.senders)
        senders = [threads.submit(self.sender) for _ in range(self.senders)]
        feeder = None
        if connection.features.has_select_for_update_skip_locked:
            feeder = threading.Thread(target=self.feed, name="webhook-feeder", daemon=True)
            feeder.start()
        outage = Outage(
            logger,
            down="the database is unavailable (%s); the round waits",
            back="the database is back; the round claims again",
            first=RECONNECT_WAIT,
            most=RECONNECT_WAIT_MAX,
        )
        try:
            while True:
                try:
                    if outage.down:  # a pass may not reach the database: see that it answers
                        connection.ensure_connection()
                    claimed = self.claim()
                    self.tend()
                    self.flush()
                    self.beat()
                    outage.ok()
                except CONNECTION_ERRORS as exc:
                    # the senders go on with what they hold; claims wait for the database
                    pause = outage.failed(exc)
                    if self.idle() and time.monotonic() >= self.stop_at:
                        break
                    with self.cond:
                        self.cond.wait(pause)
                    continue
                if self.idle():
                    with self.cond:
                        # a slow endpoint's sends ended after the claim: its given-back
                        # deliveries are claimed for on the next look, not left to a new round
                        freed = bool(self.freed)
                    if time.monotonic() >= self.stop_at or (claimed == 0 and not freed):
                        break  # out of time, or nothing in progress and nothing due
                    if claimed is None or freed:
                        self.next_claim = 0.0  # one more look before the round ends
                        continue
                with self.cond:
                    self.cond.wait(FLUSH_EVERY)
        finally:
            self.stopping.set()
            if feeder is not None:
                feeder.join()  # what it claimed last is in the lanes: finish gives it back
            self.finish(senders)
        return self.sent

    def finish(self, senders: list[Future[None]]) -> None:
        """Give back what never started, wait for what did (it ends by its deadline), record."""
        with self.cond:
            self.closing = True
            waiting = [claim for lane in self.lanes.values() for claim in lane] + self.late
            self.lanes, self.late = {}, []
            self.heads.clear()
            self.cond.notify_all()
        try:
            if waiting:
                _reconnecting(
                    lambda again: services.deliveries_release(waiting),
                    until=min(_leases_end(waiting), self.record_by),
                    what=f"giving back {len(waiting)} unsent webhook claims",
                )
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            logger.exception("unsent webhook claims not given back; they are retried later")
        wait(senders)
        self.flush(force=True)


def send_due(*, budget: float, lane: str = lanes.NARROW) -> int:
    """Send due deliveries of ``lane`` (``webhooks.lanes``) for ``budget`` seconds with the
    process's sender threads.

    Returns how many attempts were made. A round ends when nothing is due any more (after one
    more look ``IDLE_CLAIM_EVERY`` later) or when its budget is used up; then, if deliveries are
    still due, another wake-up is queued (behind the messages already waiting), so one backlog
    does not hold a worker process for ever.
    """
    if not _coordinating.acquire(blocking=False):
        return 0  # this process is sending already (a threads pool ran two wake-ups at once)
    try:
        senders = max(int(settings.JOBTRAIL_WEBHOOK_SENDERS), 1)
        sent = _Round(senders=senders, stop_at=time.monotonic() + budget, work_lane=lane).run()
    finally:
        _coordinating.release()
    if services.due_deliveries_exist(lane):
        services.wakeup_send(lane)
    return sent
