"""Batch progress: a tqdm bar on a terminal; without one (a CronJob, a pipe), a log line now and then.

The runner only counts (``step``, ``done``); this module decides how the count is shown. Without a
terminal the line "batch progress: 120/500 patients (3 failed, 12.0/s)" is logged at INFO every
RLS_SCREEN_PROGRESS_LOG_EVERY_S seconds and when the last patient is done, so a job's logs show
that it is moving and how fast.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from rls_screen.observability.settings import get_observability_settings

log = logging.getLogger("rls_screen.batch.progress")


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr, *, log_every_s: float | None = None) -> None:
        self.total, self.failed = total, 0
        self._done = 0
        self._started = time.monotonic()
        self._every_s = log_every_s if log_every_s is not None else get_observability_settings().progress_log_every_s
        self._last_log = self._started
        isatty = getattr(stream, "isatty", None)
        self._bar: tqdm[Any] | None = None
        if callable(isatty) and isatty():
            self._bar = tqdm(total=total, file=stream, unit="patient", dynamic_ncols=True, leave=True)

    @property
    def done(self) -> int:
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        """Set the count (a resumed job starts at what was done; a retry round takes its patients back)."""
        self._done = value
        if self._bar is not None:
            self._bar.n = value
            self._bar.refresh()

    def step(self, failed: bool = False) -> None:
        self._done += 1
        self.failed += int(failed)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(failed=self.failed, refresh=False)
            if self._done >= self.total:
                self.close()
            return
        now = time.monotonic()
        if now - self._last_log >= self._every_s or self._done == self.total:
            self._last_log = now
            rate = self._done / max(now - self._started, 1e-6)
            log.info("batch progress: %d/%d patients (%d failed, %.1f/s)", self._done, self.total, self.failed, rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
