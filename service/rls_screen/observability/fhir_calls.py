"""What the FHIR seam reports about each request: a client span, its ``traceparent``, counters, timings.

``send`` wraps the one ``Session.request`` call of ``FhirClient`` (one attempt); ``retried`` counts a
retry; ``counts_errors`` decorates the client's entry points so each typed error given to a caller is
counted once, by class. Labels and span attributes are the method, the resource type (bounded by
``metrics.resource_label``), the server's host and the status: never the URL, its query or a body.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import requests
from opentelemetry.trace import SpanKind, StatusCode

from rls_screen.errors import RlsScreenError
from rls_screen.observability import tracing
from rls_screen.observability.metrics import error_label, get_metrics, resource_label, retry_reason_label, status_label

P = ParamSpec("P")
R = TypeVar("R")


def send(session: requests.Session, method: str, url: str, kind: str, attempt: int, **kwargs: Any) -> requests.Response:
    """``session.request(method, url, **kwargs)``, traced and counted; ``kwargs['headers']`` gets the traceparent."""
    metrics = get_metrics()
    resource = resource_label(kind)
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "fhir.resource_type": resource,
        "http.request.resend_count": attempt - 1,
    }
    with tracing.span(f"FHIR {method} {resource}", attributes, kind=SpanKind.CLIENT) as span:
        tracing.inject_traceparent(kwargs["headers"])
        started = time.monotonic()
        try:
            response = session.request(method, url, **kwargs)
        except Exception as error:
            metrics.fhir_requests.labels(method, resource, error_label(type(error).__name__)).inc()
            raise
        finally:
            metrics.fhir_request_seconds.labels(method, resource).observe(time.monotonic() - started)
        metrics.fhir_requests.labels(method, resource, status_label(response.status_code)).inc()
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(StatusCode.ERROR)
        return response


def retried(method: str, kind: str, why: str) -> None:
    get_metrics().fhir_retries.labels(method, resource_label(kind), retry_reason_label(why)).inc()


def counts_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Count each module error (``RlsScreenError``: the typed FHIR errors, a refused URL) the call raises."""

    @functools.wraps(function)
    def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except RlsScreenError as error:
            get_metrics().fhir_errors.labels(error_label(type(error).__name__)).inc()
            raise

    return counted
