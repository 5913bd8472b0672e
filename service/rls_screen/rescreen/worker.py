"""The re-screen workers: a bounded number of threads that take due patients from the queue and screen them.

Each worker claims one patient, screens them as ``rls-screen screen`` does (the same ``screen_patient``:
read the contract from the FHIR server, evaluate, write back in one transaction, nothing when the
server already holds the result) and ends the claim. A failure on a transient error (server
unreachable, 5xx, 429: the batch runner's classification, one place) is retried with exponential
backoff and jitter up to ``max_attempts``; any other failure is kept with its reason at once, since
asking again gets the same answer. Workers sleep until the next patient is due or a notification
wakes them. Logs carry counts and reasons' kinds, never patient ids.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rls_screen.batch.runner import _classify_failure as classify_failure
from rls_screen.rescreen.queue import Claim, RescreenQueue

log = logging.getLogger("rls_screen.rescreen")
IDLE_POLL_S = 5.0
"""Longest sleep with nothing due: another process on the same queue may have added work."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_s: float
    max_s: float

    def pause(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before try ``attempt + 1``: base, doubled per try, capped, with +-20 % jitter (so the
        patients of one outage do not all come back in the same second)."""
        return float(min(self.max_s, self.base_s * 2.0 ** (attempt - 1)) * (0.8 + 0.4 * rand()))


class RescreenWorkers:
    """``workers`` threads over one queue; ``screen(patient_id)`` returns whether it wrote."""

    def __init__(
        self,
        queue: RescreenQueue,
        screen: Callable[[str], bool],
        *,
        workers: int,
        retry: RetryPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue, self._screen, self._retry, self._clock = queue, screen, retry, clock
        self._count = workers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for n in range(self._count):
            thread = threading.Thread(target=self._run, name=f"rescreen-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("rescreen: %d worker(s) started", self._count)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking patients; a screen in flight finishes (or its lease lets another process take it)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()

    def wake(self) -> None:
        """A notification arrived: look at the queue now rather than at the end of the sleep."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claim = self._queue.claim()
            except Exception as error:  # the state file is unavailable: wait and try again
                log.error("rescreen: cannot read the queue (%s)", type(error).__name__)
                self._stop.wait(IDLE_POLL_S)
                continue
            if claim is None:
                self._sleep()
                continue
            self.process(claim)

    def _sleep(self) -> None:
        try:
            due = self._queue.seconds_to_next()
        except Exception:
            due = None
        self._wake.wait(IDLE_POLL_S if due is None else min(max(due, 0.01), IDLE_POLL_S))
        self._wake.clear()

    def process(self, claim: Claim) -> None:
        """Screen one claimed patient and end the claim (public: a test or a one-off drain calls it)."""
        started = time.perf_counter()
        try:
            written = self._screen(claim.patient_id)
        except Exception as error:
            reason = classify_failure(error)
            transient = reason.startswith("transient:")
            retry_at = (
                self._clock() + self._retry.pause(claim.attempt)
                if transient and claim.attempt < self._retry.max_attempts
                else None
            )
            self._queue.fail(claim, reason, retry_at=retry_at)
            log.warning(
                "rescreen: attempt %d failed (%s)%s",
                claim.attempt,
                reason.split(":", 1)[0],
                f"; retry in {retry_at - self._clock():.0f} s" if retry_at is not None else "; not retried",
            )
            return
        self._queue.complete(claim, written=written)
        log.info(
            "rescreen: screened in %.0f ms, %s",
            (time.perf_counter() - started) * 1000,
            "written" if written else "nothing to write",
        )
