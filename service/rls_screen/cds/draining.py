"""Whether this process is draining: asked to stop, still answering, about to stop accepting.

``rls-screen serve --drain-seconds N`` sets the flag when SIGTERM arrives (``rls_screen.cli.shutdown``);
``GET /ready`` then answers 503, so a load balancer's health check takes the replica out of rotation
before its socket closes. One flag per process: every uvicorn worker receives its own SIGTERM.
"""

from __future__ import annotations

import threading

_DRAINING = threading.Event()


def begin_draining() -> None:
    _DRAINING.set()


def is_draining() -> bool:
    return _DRAINING.is_set()
