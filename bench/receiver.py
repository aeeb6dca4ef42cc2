"""A fast webhook receiver for the benchmarks: asyncio, HTTP/1.1 keep-alive, answers 204.

    python bench/receiver.py --port 8700          # prints "listening on 127.0.0.1:8700"

Every request to a path not starting with ``/_`` is a webhook: it is answered ``204 No Content``
at once and counted by ``(path, webhook-id)``. For the first arrival of each key it keeps the
arrival time (``time.time()``), the payload's ``events_id`` and ``object_id`` (found with a byte
regex, no JSON parsing on the hot path) and, up to ``--keep-bodies``, the body itself.

Control paths (the harness reads them between runs):
    GET  /_stats                  totals: requests, unique keys, duplicates, first/last arrival
    GET  /_records?prefix=/w/     one row per key under a path prefix (JSON list)
    GET  /_bodies?prefix=/w/&limit=N   kept bodies (JSON list of strings)
    POST /_reset                  forget everything
"""

import argparse
import asyncio
import contextlib
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The payload is JSON from PostgreSQL's jsonb (keys in any order): look for the key itself.
EVENTS_ID = re.compile(rb'"events_id":\s*"([^"]+)"')
OBJECT_ID = re.compile(rb'"object_id":\s*"([^"]+)"')
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: bench-receiver\r\n\r\n"
NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
MAX_HEADER = 64 * 1024


class State:
    def __init__(self, keep_bodies: int) -> None:
        self.keep_bodies = keep_bodies
        self.reset()

    def reset(self) -> None:
        self.total = 0
        # (path, webhook-id) -> [count, first_at, events_id, object_id]
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.bodies: list[tuple[str, bytes]] = []
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.last_new_at: float | None = None

    def webhook(self, path: str, webhook_id: str, body: bytes) -> None:
        now = time.time()
        self.total += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        key = (path, webhook_id)
        record = self.records.get(key)
        if record is not None:
            record[0] += 1
            return
        self.last_new_at = now
        events = EVENTS_ID.search(body)
        obj = OBJECT_ID.search(body)
        self.records[key] = [
            1,
            now,
            events.group(1).decode() if events else "",
            obj.group(1).decode() if obj else "",
        ]
        if len(self.bodies) < self.keep_bodies:
            self.bodies.append((path, body))

    def stats(self) -> dict[str, Any]:
        unique = len(self.records)
        return {
            "requests": self.total,
            "unique": unique,
            "duplicates": self.total - unique,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "last_new_at": self.last_new_at,
        }

    def rows(self, prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "path": path,
                "webhook_id": webhook_id,
                "count": r[0],
                "first_at": r[1],
                "events_id": r[2],
                "object_id": r[3],
            }
            for (path, webhook_id), r in self.records.items()
            if path.startswith(prefix)
        ]


def _json_response(data: Any) -> bytes:
    body = json.dumps(data).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class Receiver(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self._close()
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _version = [*head[0].split(" "), "", "", ""][:3]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            close = headers.get("connection", "").lower() == "close"
            self._handle(method, target, headers, body, close)
            if close:
                return

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, close: bool
    ) -> None:
        assert self.transport is not None
        if not target.startswith("/_"):
            self.state.webhook(target, headers.get("webhook-id", ""), body)
            self.transport.write(NO_CONTENT_CLOSE if close else NO_CONTENT)
        else:
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/_stats":
                out = _json_response(self.state.stats())
            elif url.path == "/_records":
                out = _json_response(self.state.rows(query.get("prefix", "/")))
            elif url.path == "/_bodies":
                prefix, limit = query.get("prefix", "/"), int(query.get("limit", "1000000"))
                kept = [b.decode() for p, b in self.state.bodies if p.startswith(prefix)]
                out = _json_response(kept[:limit])
            elif url.path == "/_reset" and method == "POST":
                self.state.reset()
                out = _json_response({"reset": True})
            else:
                out = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            self.transport.write(out)
        if close:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int, keep_bodies: int) -> None:
    state = State(keep_bodies)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiver(state), host, port, backlog=1024)
    sockname = server.sockets[0].getsockname()
    print(f"listening on {sockname[0]}:{sockname[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--keep-bodies", type=int, default=20_000)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.keep_bodies))


if __name__ == "__main__":
    main()
