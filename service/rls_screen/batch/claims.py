"""One runner's share of a job: its id, the chunks of patients it claims, and the lease it keeps while it works.

Several ``rls-screen batch`` runners may work on one job (``--resume JOB`` while it runs, from this host or
another sharing the state store). Each claims a chunk of patients at a time (``JobStore.claim``), a lease
renewal thread keeps its claims alive every third of the lease, and ``run_job`` records each outcome
under the claim. A runner killed with kill -9 stops renewing; when its lease runs out, a runner still at
work claims its patients again (``wait_for_others``). A runner that stops on SIGTERM gives its claims back
at once (``JobStore.release``), so the others need not wait for the lease.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rls_screen.batch.jobs import JobStore
from rls_screen.state import StateStoreError

log = logging.getLogger("rls_screen.batch.runner")

DEFAULT_LEASE_S = 60.0
"""How long a claim holds without renewal: what a killed runner costs the others before they take over its
patients. Renewed every third of it, so a runner whose database answers slowly once keeps its claims."""
OTHERS_POLL_S = 1.0
"""How often a runner with nothing left to claim looks whether another runner's patients are done or free."""


def new_runner_id() -> str:
    """Who a runner is, in the job store: host, process and a random part (a restarted process is another runner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseRenewal:
    """A daemon thread that renews ``runner``'s claims on the job every third of the lease, until ``stop``."""

    def __init__(self, store: JobStore, job_id: str, runner: str, lease_s: float, clock: Callable[[], float]) -> None:
        self._store, self._job_id, self._runner, self._lease_s, self._clock = store, job_id, runner, lease_s, clock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)

    def __enter__(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.wait(self._lease_s / 3):
            try:
                self._store.renew(self._job_id, self._runner, until=self._clock() + self._lease_s)
            except StateStoreError as error:  # the next renewal may get through before the lease runs out
                log.warning("batch: could not renew the claims on the job's patients (%s)", error)


def wait_for_others(
    store: JobStore, job_id: str, runner: str, stop: threading.Event, clock: Callable[[], float]
) -> bool:
    """Nothing left to claim: wait while another runner holds patients of the job (they may come free: a runner
    killed, or giving up). True when there may be something to claim again; False when no one holds any."""
    left = store.held_by_others(job_id, runner, now=clock())
    if left is None or stop.is_set():
        return False
    stop.wait(min(max(left, 0.05), OTHERS_POLL_S))
    return not stop.is_set()


@contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets ``stop`` (the runner checkpoints) instead of ending the process where it stands."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
