"""One replica SIGKILLed under load: only the calls it had in flight are lost; HAProxy sends the rest on.

Eight clients call the balancer back to back (fresh JWT per call) for a few seconds; midway, one replica
is killed with SIGKILL (no goodbye: a crashed process or a lost host). A call the dead replica had
already received cannot be answered: HAProxy, by design, never resends a POST that reached a server.
It answers 502, or closes the client's connection (the request had gone over a reused keep-alive
connection, or the answer was cut). Every other call, including those HAProxy tried on the dead replica
before its health check marked it down (connection refused: redispatched to the survivor), answers
200 with its card. Stopped with SIGTERM and ``--drain-seconds`` instead, a replica loses no call at all.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests
from tests.api.helpers import NORMAL, PATIENT_VIEW, full_prefetch, labs, patient_view_request
from tests.replicas.cluster import HAPROXY_UP, wait_until
from tests.replicas.conftest import Pair

pytestmark = [pytest.mark.replicas, pytest.mark.slow]

CLIENTS = 8
LOAD_SECONDS = 6.0
KILL_AFTER_S = 2.0


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    ok: int = 0
    ok_after_kill: int = 0
    errors: list[str] = field(default_factory=list)
    wrong_answers: list[str] = field(default_factory=list)
    killed: bool = False


def _client(pair: Pair, prefix: str, stop: threading.Event, tally: Tally) -> None:
    session = requests.Session()
    body = patient_view_request(prefix, full_prefetch(prefix, labs(prefix, **{**NORMAL, "ferritin": 9.0})))
    while not stop.is_set():
        with tally.lock:
            tally.in_flight += 1
        try:
            token = pair.ehr.token(f"/cds-services/{PATIENT_VIEW}")
            response = session.post(
                f"{pair.balancer.url}/cds-services/{PATIENT_VIEW}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            outcome = f"{response.status_code}"
            cards = response.json()["cards"] if response.status_code == 200 else None
        except requests.RequestException as error:
            outcome, cards = type(error).__name__, None
        with tally.lock:
            tally.in_flight -= 1
            if cards is None:
                tally.errors.append(outcome)
            elif [c["source"]["topic"]["code"] for c in cards] != ["iron-deficiency"]:
                tally.wrong_answers.append(str(cards)[:200])
            else:
                tally.ok += 1
                tally.ok_after_kill += tally.killed


def _load_with(pair: Pair, prefix: str, action: object) -> tuple[Tally, int, int]:
    """Run the clients for LOAD_SECONDS; ``action()`` at KILL_AFTER_S with no call starting or ending meanwhile.
    Returns the tally, the calls in flight at the action and the calls answered before it."""
    tally, stop = Tally(), threading.Event()
    clients = [
        threading.Thread(target=_client, args=(pair, f"{prefix}-{n}", stop, tally), daemon=True) for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(KILL_AFTER_S)
    with tally.lock:  # the in-flight count is exact
        assert callable(action)
        action()
        tally.killed = True
        in_flight, ok_before = tally.in_flight, tally.ok
    time.sleep(LOAD_SECONDS - KILL_AFTER_S)
    stop.set()
    for client in clients:
        client.join(timeout=60)
    print(  # the figures, for the run's log
        f"calls: {tally.ok} ok ({ok_before} before), {len(tally.errors)} lost {tally.errors}, {in_flight} in flight"
    )
    return tally, in_flight, ok_before


def test_a_killed_replica_loses_only_its_calls_in_flight(pair: Pair, unique_prefix: str) -> None:
    def kill() -> None:
        pair.a.signal(signal.SIGKILL)
        pair.a.wait(10)

    tally, in_flight_at_kill, ok_before_kill = _load_with(pair, unique_prefix, kill)
    assert not tally.wrong_answers
    assert ok_before_kill > CLIENTS, "load was running before the kill"
    assert tally.ok_after_kill > 4 * CLIENTS, "the survivor kept answering"
    # Only calls that were in flight when the replica died are lost: a 502, or a connection closed
    # without an answer or in the middle of one.
    assert len(tally.errors) <= in_flight_at_kill, pair.logs()
    assert set(tally.errors) <= {"502", "ConnectionError", "ChunkedEncodingError"}, tally.errors
    # HAProxy took the dead replica out of rotation.
    assert wait_until(lambda: pair.balancer.server_states().get("replica1") != HAPROXY_UP, 10)


@pytest.mark.parametrize("replica_args", [["--drain-seconds", "3"]])
def test_a_replica_stopped_with_sigterm_and_a_drain_loses_no_call(pair: Pair, unique_prefix: str) -> None:
    """A rolling restart: /ready answers 503, HAProxy stops sending, the replica finishes and exits 0."""
    tally, _, ok_before = _load_with(pair, unique_prefix, lambda: pair.a.signal(signal.SIGTERM))
    assert pair.a.wait(20) == 0
    assert not tally.wrong_answers
    assert ok_before > CLIENTS
    assert tally.errors == [], pair.logs()
    assert tally.ok_after_kill > 4 * CLIENTS
    assert pair.balancer.server_states().get("replica1") != HAPROXY_UP
