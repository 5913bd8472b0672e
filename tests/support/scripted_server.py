"""A real HTTP server on loopback that answers from a script, and records what it received.

Used where a test needs a server that misbehaves in a precise way (401, 429 with Retry-After, 503,
a slow answer) or needs to prove that no request arrived. It is a real socket server, not a patch.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[Received], Reply]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
        self.server.received.append(received)
        reply = self.server.script(received)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        payload = (
            b""
            if reply.body is None
            else (reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode())
        )
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "application/fhir+json"))
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            if name != "Content-Type":
                self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Script) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = script
        self.received: list[Received] = []


@contextmanager
def scripted_server(script: Script) -> Iterator[_Server]:
    server = _Server(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def base_url(server: _Server, path: str = "/fhir") -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"
