"""A real HTTP fault-injecting proxy on loopback, between the module and a FHIR server.

``FaultProxy(upstream)`` listens on 127.0.0.1 (a free port) and forwards every HTTP/1.1 request to
the upstream server, one fresh upstream connection per request, keeping the client's connection
alive like a real reverse proxy. The Host header is passed through unchanged, so a HAPI server
builds its links (Bundle next, Location) with the proxy's address and the client stays behind it.

Faults are rules (``Fault``) switched at run time with ``set_faults`` / ``add_fault`` / ``clear``.
Each request is matched against the rules in order: every matching ``delay`` rule adds latency,
then the first matching terminal rule decides what happens instead of a plain forward:

- ``reset``          RST the client connection before forwarding (the server never saw the request);
                     with ``stage="connect"`` the connection is reset as soon as it is accepted
- ``respond``        answer without forwarding (429 with Retry-After, 503, ...)
- ``stall``          hold the request without forwarding for ``delay_s`` (past the client's read
                     timeout), then close
- ``drop_response``  forward, read the server's full answer (it applied the request), then RST:
                     the client never learns that its write succeeded
- ``truncate``       forward, relay the headers and half the body, then RST

A rule fires on the matching requests after the first ``skip``, at most ``times`` times, each with
probability ``rate`` drawn from the proxy's own ``random.Random(seed)``: explicit schedules (skip,
times) are exact whatever the interleaving; rates are reproducible for a given arrival order.
Every request is recorded as an ``Event`` (what happened, the upstream status when forwarded, and
the body when a fault fired), so a test can prove that a fault really happened.

It is a test tool: it trusts its client, keeps everything in memory and serves loopback only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

Action = Literal["delay", "reset", "respond", "stall", "drop_response", "truncate"]
Stage = Literal["request", "connect"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
MAX_LINE = 65536


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str
    """Path and query as the client sent them, e.g. ``/fhir/Observation?subject=...``."""
    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes

    def bundle_type(self) -> str | None:
        """The ``type`` of a Bundle body (transaction, batch), or None."""
        if not self.body.lstrip().startswith(b"{"):
            return None
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return None
        if isinstance(parsed, dict) and parsed.get("resourceType") == "Bundle":
            kind = parsed.get("type")
            return kind if isinstance(kind, str) else None
        return None


@dataclass
class Fault:
    """One rule. Matching: ``method``, ``path`` (regex searched in the target), ``bundle_type``."""

    action: Action
    method: str | None = None
    path: str | None = None
    bundle_type: str | None = None
    stage: Stage = "request"
    skip: int = 0
    times: int | None = None
    rate: float = 1.0
    delay_s: float = 0.0
    status: int = 503
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    name: str = ""
    matched: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    # --- constructors for the usual faults ---------------------------------------------------------

    @classmethod
    def latency(cls, seconds: float, **match: Any) -> Fault:
        return cls("delay", delay_s=seconds, **match)

    @classmethod
    def reset(cls, **match: Any) -> Fault:
        return cls("reset", **match)

    @classmethod
    def too_many_requests(cls, retry_after: str | None = "1", **match: Any) -> Fault:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls("respond", status=429, headers=headers, body=_outcome("throttled", "slow down"), **match)

    @classmethod
    def unavailable(cls, retry_after: str | None = None, **match: Any) -> Fault:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls("respond", status=503, headers=headers, body=_outcome("transient", "try later"), **match)

    @classmethod
    def stall(cls, seconds: float, **match: Any) -> Fault:
        return cls("stall", delay_s=seconds, **match)

    @classmethod
    def drop_response(cls, **match: Any) -> Fault:
        return cls("drop_response", **match)

    @classmethod
    def truncate(cls, **match: Any) -> Fault:
        return cls("truncate", **match)

    @property
    def label(self) -> str:
        return self.name or (f"{self.action} {self.status}" if self.action == "respond" else self.action)

    def matches(self, request: ProxiedRequest | None) -> bool:
        if request is None:  # the connect stage: no request yet
            return self.stage == "connect"
        if self.stage != "request":
            return False
        if self.method is not None and request.method != self.method:
            return False
        if self.path is not None and re.search(self.path, request.target) is None:
            return False
        return self.bundle_type is None or request.bundle_type() == self.bundle_type


@dataclass(frozen=True)
class Event:
    """What the proxy did with one request (or one connection, for connect-stage faults)."""

    seq: int
    action: str
    """``forward``, ``upstream-error`` or the label of the fault that fired."""
    method: str
    target: str
    upstream_status: int | None
    """The status the upstream server answered, when the request reached it."""
    body: bytes | None = None
    """The request body, kept when a fault fired."""
    authorization: str | None = None
    """The Authorization header the client sent (the token tests need to know it was used)."""


def _outcome(code: str, text: str) -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


class _ClientGoneError(Exception):
    """The client closed or broke its connection."""


def _read_request(stream: BinaryIO) -> ProxiedRequest | None:
    line = stream.readline(MAX_LINE)
    while line in (b"\r\n", b"\n"):  # tolerate stray blank lines between requests
        line = stream.readline(MAX_LINE)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise _ClientGoneError(f"bad request line {line[:80]!r}")
    method, target, _ = parts
    headers: dict[str, str] = {}
    while True:
        header = stream.readline(MAX_LINE)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _read_chunked(stream)
    else:
        length = int(headers.get("content-length") or 0)
        body = stream.read(length) if length else b""
        if len(body) != length:
            raise _ClientGoneError("body cut short")
    return ProxiedRequest(method, target, headers, body)


def _read_chunked(stream: BinaryIO) -> bytes:
    chunks = []
    while True:
        size = int(stream.readline(MAX_LINE).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        chunks.append(stream.read(size))
        stream.readline(MAX_LINE)


@dataclass
class _Upstream:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class FaultProxy:
    """See the module docstring. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self, upstream_base_url: str, *, seed: int = 0, upstream_timeout_s: float = 120.0, record_bodies: bool = False
    ) -> None:
        parts = urlsplit(upstream_base_url.rstrip("/"))
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError("the fault proxy forwards plain http only")
        self._upstream = (parts.hostname, parts.port or 80)
        self._upstream_timeout_s = upstream_timeout_s
        # Keep the body of every forwarded request too (a benchmark replays them), not only faulted ones.
        self._record_bodies = record_bodies
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}{parts.path}"
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._seq = 0
        self.events: list[Event] = []

    # --- control -----------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        thread = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(self, *faults: Fault) -> list[Fault]:
        """Replace every rule (counters start from zero)."""
        with self._lock:
            self._faults = list(faults)
        return list(faults)

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self.set_faults()

    def fired(self, label: str | None = None) -> list[Event]:
        """Events where a fault fired (``label``: only that fault's)."""
        with self._lock:
            events = list(self.events)
        return [e for e in events if e.action != "forward" and (label is None or e.action == label)]

    def forwarded(self) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.action == "forward"]

    # --- machinery ---------------------------------------------------------------------------------

    def _record(self, action: str, request: ProxiedRequest | None, status: int | None, keep_body: bool) -> None:
        with self._lock:
            self._seq += 1
            self.events.append(
                Event(
                    self._seq,
                    action,
                    request.method if request else "-",
                    request.target if request else "-",
                    status,
                    request.body if (request is not None and keep_body) else None,
                    request.headers.get("authorization") if request else None,
                )
            )

    def _decide(self, request: ProxiedRequest | None) -> tuple[float, Fault | None]:
        """Total added latency and the terminal fault, if any, for this request (or connection)."""
        delay, terminal = 0.0, None
        with self._lock:
            for fault in self._faults:
                if terminal is not None and fault.action != "delay":
                    continue  # the first terminal rule won: later ones do not see (or count) this request
                if not fault.matches(request):
                    continue
                fault.matched += 1
                if fault.matched <= fault.skip or (fault.times is not None and fault.fired >= fault.times):
                    continue
                if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                    continue
                fault.fired += 1
                if fault.action == "delay":
                    delay += fault.delay_s
                else:
                    terminal = fault
        return delay, terminal

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True)
            thread.start()
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._clients.add(client)
        stream = client.makefile("rb")
        try:
            _, fault = self._decide(None)
            if fault is not None:
                self._record(fault.label, None, None, False)
                self._reset(client, stream)
                return
            while not self._stopping.is_set():
                request = _read_request(stream)
                if request is None:
                    return
                if not self._handle(client, stream, request):
                    return
        except (OSError, _ClientGoneError, ValueError):
            return
        finally:
            with self._lock:
                self._clients.discard(client)
            with contextlib.suppress(OSError):
                stream.close()
                client.close()

    def _handle(self, client: socket.socket, stream: BinaryIO, request: ProxiedRequest) -> bool:
        """Serve one request; False when the client connection is finished."""
        delay, fault = self._decide(request)
        if delay and self._stopping.wait(delay):
            return False
        if fault is not None and fault.action == "reset":
            self._record(fault.label, request, None, True)
            self._reset(client, stream)
            return False
        if fault is not None and fault.action == "respond":
            self._record(fault.label, request, None, True)
            headers = [("Content-Type", "application/fhir+json"), *fault.headers.items()]
            self._send(client, fault.status, HTTPStatus(fault.status).phrase, headers, fault.body or b"")
            return True
        if fault is not None and fault.action == "stall":
            self._record(fault.label, request, None, True)
            self._stopping.wait(fault.delay_s)
            return False
        try:
            answer = self._forward(request)
        except OSError:
            # The server is down or broke the connection: the client sees what it would see
            # without a proxy, a connection that fails.
            self._record("upstream-error", request, None, True)
            self._reset(client, stream)
            return False
        if fault is not None and fault.action == "drop_response":
            self._record(fault.label, request, answer.status, True)
            self._reset(client, stream)
            return False
        if fault is not None and fault.action == "truncate":
            self._record(fault.label, request, answer.status, True)
            half = answer.body[: len(answer.body) // 2]
            self._send(client, answer.status, answer.reason, answer.headers, half, length=len(answer.body))
            self._reset(client, stream)
            return False
        self._record("forward", request, answer.status, self._record_bodies)
        self._send(client, answer.status, answer.reason, answer.headers, answer.body)
        return request.headers.get("connection", "").lower() != "close"

    def _forward(self, request: ProxiedRequest) -> _Upstream:
        host, port = self._upstream
        connection = http.client.HTTPConnection(host, port, timeout=self._upstream_timeout_s)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
            headers["connection"] = "close"
            connection.request(request.method, request.target, body=request.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()  # decodes chunked transfer; content-encoding is passed through
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return _Upstream(response.status, response.reason, kept, body)
        except http.client.HTTPException as error:
            raise OSError(f"upstream protocol error: {type(error).__name__}") from error
        finally:
            connection.close()

    @staticmethod
    def _send(
        client: socket.socket,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        length: int | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} {reason or 'Status'}"]
        head += [f"{name}: {value}" for name, value in headers]
        head += [f"Content-Length: {len(body) if length is None else length}", "Connection: keep-alive", "", ""]
        client.sendall("\r\n".join(head).encode("latin-1") + body)

    @staticmethod
    def _reset(client: socket.socket, stream: BinaryIO) -> None:
        """Close with RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            stream.close()
            client.close()


@contextlib.contextmanager
def fault_proxy(upstream_base_url: str, *faults: Fault, seed: int = 0) -> Iterator[FaultProxy]:
    """A started proxy in front of ``upstream_base_url`` with the given rules; stopped on exit."""
    proxy = FaultProxy(upstream_base_url, seed=seed)
    proxy.set_faults(*faults)
    with proxy:
        yield proxy


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or the time is up (for tests watching the proxy)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
