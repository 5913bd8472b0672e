"""What the CDS app reports about each call: latency by outcome, cards by finding and indicator,
suppressed cards, deadline hits, JWT refusals; and the call's hookInstance on its logs and span.

The app calls these at the points where it already logs (``rls_screen.cds.app``); the cards are read
through a small protocol so that this module does not import the CDS package (which imports it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from rls_screen.observability import tracing
from rls_screen.observability.logs import bind_hook_instance
from rls_screen.observability.metrics import get_metrics, jwt_reason_label


class _Coding(Protocol):
    @property
    def code(self) -> str | None: ...


class _Source(Protocol):
    @property
    def topic(self) -> _Coding | None: ...


class _Card(Protocol):
    @property
    def indicator(self) -> str: ...
    @property
    def source(self) -> _Source: ...


def call_started(service_id: str, hook: str, hook_instance: str) -> float:
    """Bind the hookInstance to this call's logs and span; returns the start time for ``call_*``."""
    bind_hook_instance(hook_instance)
    tracing.annotate(**{"cds.service": service_id, "cds.hook": hook, "cds.hook_instance": hook_instance})
    return time.perf_counter()


def call_answered(service_id: str, started: float, cards: Sequence[_Card], suppressed: int) -> None:
    metrics = get_metrics()
    metrics.cds_call_seconds.labels(service_id, "ok").observe(time.perf_counter() - started)
    for card in cards:
        topic = card.source.topic
        finding = (topic.code if topic is not None else None) or "none"
        metrics.cds_cards.labels(service_id, finding, card.indicator).inc()
    if suppressed:
        metrics.cds_suppressed.labels(service_id).inc(suppressed)
    tracing.annotate(**{"cds.cards": len(cards), "cds.suppressed": suppressed})


def call_past_deadline(service_id: str, started: float) -> None:
    metrics = get_metrics()
    metrics.cds_call_seconds.labels(service_id, "deadline").observe(time.perf_counter() - started)
    metrics.cds_deadline.labels(service_id).inc()
    tracing.annotate(**{"cds.deadline_hit": 1})


def call_refused(service_id: str, started: float, status: int) -> None:
    """A call that ended in an error answer (412 data unavailable, 500)."""
    outcome = f"http-{status}" if 400 <= status <= 599 else "error"
    get_metrics().cds_call_seconds.labels(service_id, outcome).observe(time.perf_counter() - started)


def jwt_rejected(reason: str) -> None:
    get_metrics().jwt_rejections.labels(jwt_reason_label(reason)).inc()
