"""The rounds of a batch run: the progress bar, the pauses before retry rounds, and the server probe.

Transient server errors are retried in later rounds of the same run, after pauses that double up to
a cap; during a pause the server is probed (``GET [base]/metadata``) and the round starts as soon as
it answers.
"""

from __future__ import annotations

import logging
import threading
import time

from rls_screen.errors import FhirError, FhirUnavailableError
from rls_screen.fhir_client import FhirClient

log = logging.getLogger("rls_screen.batch.runner")  # the runner's logger, as before the split


# Retry rounds: with the defaults the pauses are 4, 8, 16, 30, 30 and 30 s, about 2 minutes in all
# (plus the rounds themselves), which covers a restart of the local HAPI server (80 to 100 s here,
# docs/resilience.md); the probe starts a round within about a second of the server answering again.
DEFAULT_RETRY_ROUNDS = 6
DEFAULT_RETRY_PAUSE_S = 4.0
DEFAULT_RETRY_PAUSE_MAX_S = 30.0
DEFAULT_PROBE_EVERY_S = 1.0


def retry_pauses(first_s: float, rounds: int, max_s: float) -> tuple[float, ...]:
    """Pauses before ``rounds`` retry rounds: ``first_s``, doubling each round, never above ``max(max_s, first_s)``."""
    cap = max(max_s, first_s)
    pauses: list[float] = []
    pause = first_s
    for _ in range(rounds):
        pauses.append(pause)
        pause = min(pause * 2, cap)
    return tuple(pauses)


def server_answers(client: FhirClient) -> bool:
    """A cheap probe, through the client (allowlist, auth, its own retries): does ``GET [base]/metadata`` answer?

    Any answer but a transient failure counts: a 401 or 404 on metadata still means the server is up,
    and the retry round will say what is wrong with the patients.
    """
    try:
        client.request("GET", "metadata", params={"_summary": "true"})
    except FhirUnavailableError:
        return False
    except FhirError:
        return True
    except Exception as error:  # a probe must never end the batch; the round will meet the same error
        log.warning("FHIR server probe failed: %s", type(error).__name__)
        return False
    return True


def wait_before_retry(
    client: FhirClient | None, pause_s: float, probe_every_s: float, *, stop: threading.Event | None = None
) -> bool:
    """Sleep ``pause_s``, probing the server every ``probe_every_s`` when there is one; True when it
    answered before the pause was over (the caller starts its round at once). ``stop`` (SIGTERM) ends
    the pause at once.

    Bounded: no probe starts after the pause; one started before it may outlast it by the client's
    own timeouts and retries.
    """
    stop = stop or threading.Event()
    deadline = time.monotonic() + pause_s
    while (left := deadline - time.monotonic()) > 0 and not stop.is_set():
        if client is None or probe_every_s <= 0:  # offline, or no probing: sleep the whole pause
            stop.wait(left)
            return False
        stop.wait(min(left, probe_every_s))
        if time.monotonic() < deadline and not stop.is_set() and server_answers(client):
            return True
    return False
