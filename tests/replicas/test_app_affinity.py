"""The SMART app's sessions live in one replica's memory: behind HAProxy, /app/ sticks to one replica by cookie,
while CDS Hooks calls (no cookie) still spread over both."""

from __future__ import annotations

import requests
from tests.replicas.cluster import wait_until
from tests.replicas.conftest import Pair

APP_PATH = "/app/launch"


def _served(pair: Pair, backend_server: str, path: str) -> int:
    """Calls of ``path`` HAProxy sent to ``backend/server`` (its http log names the server that answered)."""
    return sum(
        1 for line in pair.balancer.log().splitlines() if f" {backend_server} " in line and f"GET {path} " in line
    )


def test_app_paths_stick_to_one_replica_and_hooks_spread(pair: Pair) -> None:
    browser = requests.Session()
    first: list[requests.Response] = []

    def answered() -> bool:  # the app backend's health checks come up with the replicas' (rise 2)
        response = browser.get(pair.balancer.url + APP_PATH, timeout=10)
        first[:] = [response]
        return response.status_code != 503

    assert wait_until(answered, 30, 0.5), pair.logs()
    cookie = browser.cookies.get("rls_replica")
    assert cookie in ("replica1", "replica2"), first[0].headers
    for _ in range(8):
        browser.get(pair.balancer.url + APP_PATH, timeout=10)
    other = "replica2" if cookie == "replica1" else "replica1"
    assert wait_until(lambda: _served(pair, f"app/{cookie}", APP_PATH) >= 9, 10), pair.logs()
    assert _served(pair, f"app/{other}", APP_PATH) == 0  # every call went to the replica holding the session

    for _ in range(6):  # hooks: no cookie, round robin over both
        requests.get(pair.balancer.url + "/health", timeout=10)
    assert wait_until(
        lambda: all(_served(pair, f"replicas/{server}", "/health") >= 2 for server in ("replica1", "replica2")), 10
    ), pair.logs()
