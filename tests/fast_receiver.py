"""A fast webhook receiver for throughput runs: raw HTTP/1.1 on asyncio, keep-alive, 204.

The threaded receiver of ``tests/receiver.py`` records everything and answers HTTP/1.0 (one
connection per request): right for behaviour tests, a bottleneck for throughput. This one parses
just enough HTTP/1.1 (request line, headers, Content-Length body), answers ``204 No Content``
on the same connection, and counts requests per ``webhook-id``.

Run it in its own process (it then uses a core of its own)::

    python -m tests.fast_receiver --port 8765

``GET /stats`` answers ``{"requests": n, "ids": unique webhook-ids, "duplicates": n}``; ``GET
/ids`` every webhook-id with its count. In-process: ``FastReceiver().start()`` in a thread.
"""

import argparse
import asyncio
import json
import threading
from collections import Counter

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class FastReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.ids: Counter[str] = Counter()
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "ids": len(self.ids),
            "duplicates": sum(n - 1 for n in self.ids.values() if n > 1),
        }

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                msg_id = ""
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "webhook-id":
                        msg_id = value.strip()
                if length:
                    await reader.readexactly(length)
                if method == "GET":
                    payload = json.dumps(
                        self.stats() if path == "/stats" else dict(self.ids)
                    ).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                        + payload
                    )
                else:
                    self.requests += 1
                    if msg_id:
                        self.ids[msg_id] += 1
                    writer.write(NO_CONTENT)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _main(self) -> None:
        server = await asyncio.start_server(self._serve_client, self.host, self.port, backlog=512)
        self.port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        async with server:
            await server.serve_forever()

    def run(self) -> None:
        asyncio.run(self._main())

    def start(self) -> "FastReceiver":
        """Serve from a daemon thread of this process; returns once it listens."""
        threading.Thread(target=self.run, name="fast-receiver", daemon=True).start()
        self._ready.wait(10)
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    FastReceiver(args.host, args.port).run()


if __name__ == "__main__":
    main()
