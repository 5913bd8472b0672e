"""How ``rls-screen serve`` stops on SIGTERM: optionally drain, stop accepting, finish calls in flight, exit 0.

uvicorn already shuts down gracefully on SIGTERM (listening socket closed, idle keep-alive connections
closed, calls in flight answered, then the process ends), bounded by ``timeout_graceful_shutdown``
(``--graceful-timeout``: then the calls still running are cancelled). Four things are added here:

- **Drain** (``--drain-seconds N``, off by default): the first SIGTERM marks the process draining
  (``GET /ready`` answers 503, ``rls_screen.cds.draining``) and keeps serving for N seconds, so a load
  balancer's health check (or a Kubernetes readiness probe) takes the replica out before it stops
  accepting; a second SIGTERM stops at once. The handler is installed at ASGI lifespan startup, in the
  process that serves (with ``--workers`` each worker gets its own SIGTERM from the supervisor).
- **A bound on the end**: a cancelled call may leave a thread blocked on a slow FHIR read, and asyncio
  joins its threads before the process can end; ``ABANDONED_WORK_GRACE_S`` after the lifespan has
  ended, the process exits anyway.
- **Exit 0**: uvicorn re-raises the signal it stopped on once it has stopped; with the default action
  the process would then die of that SIGTERM (status 143) after a clean shutdown.
- **Refused, not hung** (``--workers`` > 1): the supervisor holds its own copy of the shared listening
  socket; left open, the kernel would keep completing handshakes that no worker will ever accept, so
  a client (or a load balancer's retry) would wait instead of being refused. It is closed first.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from rls_screen.cds.draining import begin_draining
from rls_screen.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("rls_screen.serve")

DRAIN_ENV = "RLS_SCREEN_SERVE_DRAIN_SECONDS"
"""Carries ``--drain-seconds`` from the supervisor to the worker processes it spawns (they call ``worker_app``)."""

ABANDONED_WORK_GRACE_S = 1.0
"""How long a stopped process waits for worker threads whose calls were already answered or cut."""

SignalHandler = Callable[[int, FrameType | None], Any]


def graceful_lifespan(app: FastAPI, drain_seconds: float) -> FastAPI:
    """Wrap the app's lifespan: once serving, the first SIGTERM drains for ``drain_seconds`` (if > 0); once
    stopped, calls abandoned in worker threads cannot hold the process past ``ABANDONED_WORK_GRACE_S``."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        if drain_seconds > 0:
            _install_drain_handler(drain_seconds)
        async with inner(asgi_app) as state:
            yield state
        _exit_if_still_running_after(ABANDONED_WORK_GRACE_S)

    app.router.lifespan_context = lifespan
    return app


def _exit_if_still_running_after(seconds: float) -> None:
    """After the lifespan has ended, asyncio still joins its thread pool: a call cut by the graceful timeout
    (or past its own deadline) may leave a thread waiting on a slow FHIR server for many seconds more."""

    def hard_exit() -> None:
        log.warning("serve: threads of abandoned calls still busy %.1f s after shutdown; exiting anyway", seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(0)  # the state store is crash-safe (SQLite WAL, PostgreSQL transactions)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True  # a process that ends sooner takes the timer with it
    timer.start()


def _install_drain_handler(seconds: float) -> None:
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's only
        log.warning("serve: not in the main thread; --drain-seconds is ignored")
        return
    stop = signal.getsignal(signal.SIGTERM)  # uvicorn's handler, installed before the lifespan starts
    if not callable(stop):
        return
    stop_now: SignalHandler = stop
    state = {"draining": False}

    def handle_sigterm(sig: int, frame: FrameType | None) -> None:
        if state["draining"]:  # asked twice: stop accepting now
            stop_now(sig, frame)
            return
        state["draining"] = True
        begin_draining()
        log.info("serve: SIGTERM; draining for %.1f s (/ready answers 503), then stopping", seconds)
        timer = threading.Timer(seconds, stop_now, args=(sig, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handle_sigterm)


class _ClosingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, closing its copy of the listening socket before it stops the workers."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def _stopped(sig: int, frame: FrameType | None) -> None:
    """What uvicorn's re-raised SIGTERM meets after a graceful shutdown: nothing left to do."""


def serve_until_stopped(config: uvicorn.Config, drain_seconds: float) -> None:
    """Run ``config`` (one process, or a supervisor and ``config.workers`` workers) until SIGTERM or SIGINT."""
    if config.workers > 1:
        os.environ[DRAIN_ENV] = str(drain_seconds)
        sock = config.bind_socket()
        try:
            _ClosingSupervisor(config, sockets=[sock]).run()
        finally:
            sock.close()
        return
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, _stopped)
    with suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise ConfigurationError(f"the service did not start on {config.host}:{config.port} (see the log above)")


def drain_seconds_of_worker() -> float:
    try:
        return float(os.environ.get(DRAIN_ENV, "0"))
    except ValueError:
        return 0.0
