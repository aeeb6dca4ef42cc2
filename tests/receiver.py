"""A real local HTTP server that receives webhooks and records every request."""

import json
import select
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    # False when the sender hung up before the whole answer was written; None while answering
    answered: bool | None = None
    status: int = 0  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # slow-drip receivers: write the answer one byte every ``drip`` seconds, from the body on
    # (headers sent at once) or, with ``drip_headers``, from the status line on
    drip: float = 0.0
    drip_headers: bool = False
    # a Content-Length larger than the body written (the connection then closes: cut short)
    declared_length: int | None = None


class Receiver:
    """Answers each request with the next queued ``Reply``, else the path's reply, else
    ``respond(request)`` (called under the receiver's lock, so it may keep state of its own).

    It records every request, an ordered log of ``("start" | "end", path, webhook-id)`` events,
    and the most requests it ever had in flight at once per webhook-id (``max_in_flight``).
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: list[Reply] = []
        self.path_replies: dict[str, Reply] = {}  # the reply for every request to a path
        self.default = Reply()
        self.respond: Callable[[Received], Reply] = lambda request: self.default
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.events: list[tuple[str, str, str]] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def reply(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 30
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                snapshot = list(self.requests)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        with self.lock:
            return list(self.requests)

    def in_flight_paths(self) -> Counter[str]:
        """How many requests to each path are being answered right now."""
        with self.lock:
            started = Counter(path for kind, path, _ in self.events if kind == "start")
            ended = Counter(path for kind, path, _ in self.events if kind == "end")
        return started - ended

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode()
        msg_id = handler.headers.get("webhook-id", "")
        received = Received(path=handler.path, headers=dict(handler.headers.items()), body=body)
        with self.lock:
            self.requests.append(received)
            self.events.append(("start", handler.path, msg_id))
            self.in_flight[msg_id] += 1
            self.max_in_flight[msg_id] = max(self.max_in_flight[msg_id], self.in_flight[msg_id])
            if self.path_replies.get(handler.path):
                reply = self.path_replies[handler.path]
            else:
                reply = self.replies.pop(0) if self.replies else self.respond(received)
            received.status = reply.status
        try:
            received.answered = self._answer(handler, reply)
        finally:
            with self.lock:
                self.in_flight[msg_id] -= 1
                self.events.append(("end", handler.path, msg_id))

    def _answer(self, handler: BaseHTTPRequestHandler, reply: Reply) -> bool:
        if reply.delay:
            time.sleep(reply.delay)
        payload = reply.body.encode()
        try:
            phrase = HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Unknown"
        head = [f"HTTP/1.0 {reply.status} {phrase}\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in reply.headers.items()]
        length = len(payload) if reply.declared_length is None else reply.declared_length
        head += [f"Content-Length: {length}\r\n", "\r\n"]
        raw_head = "".join(head).encode("latin-1")  # as http.server writes headers
        if not reply.drip:
            handler.wfile.write(raw_head + payload)
            return True
        if not reply.drip_headers:
            handler.wfile.write(raw_head)
            raw_head = b""
        conn: socket.socket = handler.connection
        for position in range(len(raw_head + payload)):
            if _hung_up(conn, reply.drip):
                return False
            try:
                handler.wfile.write((raw_head + payload)[position : position + 1])
            except OSError:
                return False
        return True


def _hung_up(conn: socket.socket, wait: float) -> bool:
    """Wait up to ``wait`` seconds; True as soon as the other side closes the connection."""
    readable, _, _ = select.select([conn], [], [], wait)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a sender that went away (timed out, killed) before the answer: not the receiver's error
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver._handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    receiver.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
