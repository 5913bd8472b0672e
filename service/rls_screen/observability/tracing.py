"""OpenTelemetry traces: off unless RLS_SCREEN_OTLP_ENDPOINT is set, then exported over OTLP/HTTP.

``configure_tracing`` installs the SDK's tracer provider once per process (a batch span processor and
the OTLP/HTTP protobuf exporter of the ``otel`` extra). While tracing is off, nothing here makes a span,
reads a caller's ``traceparent`` or sends one: the hot path pays one boolean test.

``TracingMiddleware`` opens the server span of each HTTP request to the CDS service, continuing the
caller's W3C trace context (``traceparent``/``tracestate`` only: the caller's baggage is not taken or
passed on); the FHIR seam opens client spans under it (``fhir_calls``), so one EHR call is one trace
across the service and the EHR's FHIR server. Span names and attributes are route templates, service
ids, resource types and status codes: never a patient id, URL query or body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rls_screen import __version__
from rls_screen.errors import ConfigurationError
from rls_screen.observability.settings import ObservabilitySettings, get_observability_settings

TRACER_NAME = "rls_screen"
PROPAGATOR = TraceContextTextMapPropagator()
"""W3C Trace Context only (traceparent, tracestate)."""
log = logging.getLogger(__name__)
_enabled = False


def tracing_enabled() -> bool:
    return _enabled


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: an endpoint given without a path gets the standard ``/v1/traces``."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError("RLS_SCREEN_OTLP_ENDPOINT must be an absolute http(s) URL without query")
    return endpoint.strip().rstrip("/") + ("/v1/traces" if parts.path in ("", "/") else "")


def _headers(text: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in (text or "").split(","):
        name, sep, value = item.partition("=")
        if not item.strip():
            continue
        if not sep or not name.strip():
            raise ConfigurationError("RLS_SCREEN_OTLP_HEADERS must be name=value pairs separated by commas")
        headers[name.strip()] = value.strip()
    return headers


def configure_tracing(settings: ObservabilitySettings | None = None) -> bool:
    """Export spans when an OTLP endpoint is set (first call in the process wins); True when tracing is on."""
    global _enabled
    if _enabled:
        return True
    settings = settings or get_observability_settings()
    if not settings.otlp_endpoint:
        return False
    endpoint = traces_url(settings.otlp_endpoint)
    headers = _headers(settings.otlp_headers.get_secret_value() if settings.otlp_headers else None)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigurationError(
            "RLS_SCREEN_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: pip install 'rls-screen[otel]'"
        ) from error
    resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)  # shuts down (flushes) at interpreter exit
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=settings.otlp_timeout_s)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("tracing: spans exported over OTLP/HTTP to %s", urlsplit(endpoint).netloc)
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME, __version__)


@contextmanager
def span(
    name: str, attributes: Mapping[str, str | int] | None = None, *, kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span | None]:
    """A span when tracing is on (None otherwise); an exception marks it failed with its type only."""
    if not _enabled:
        yield None
        return
    with tracer().start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as error:
            current.set_status(StatusCode.ERROR, type(error).__name__)  # the type, never the message
            current.set_attribute("error.type", type(error).__name__)
            raise


def annotate(**attributes: str | int) -> None:
    """Add attributes to the current span (no-op while tracing is off)."""
    if _enabled:
        trace.get_current_span().set_attributes(attributes)


def inject_traceparent(headers: dict[str, str]) -> None:
    """Put the current span's ``traceparent`` (and ``tracestate``) into outgoing request headers."""
    if _enabled:
        PROPAGATOR.inject(headers)


class TracingMiddleware:
    """The server span of each HTTP request, named by its route (``route_of``), child of the caller's trace."""

    def __init__(self, app: ASGIApp, route_of: Callable[[Scope], str]) -> None:
        self.app, self.route_of = app, route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _enabled:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name in (b"traceparent", b"tracestate")
        }
        method: str = scope.get("method", "GET")
        route = self.route_of(scope)
        attributes: dict[str, Any] = {"http.request.method": method, "http.route": route}
        with tracer().start_as_current_span(
            f"{method} {route}",
            context=PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            started = time.perf_counter()

            async def recording_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    current.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        current.set_status(StatusCode.ERROR)
                await send(message)

            try:
                await self.app(scope, receive, recording_send)
            except BaseException as error:
                current.set_status(StatusCode.ERROR, type(error).__name__)
                raise
            finally:
                current.set_attribute("rls.duration_ms", round((time.perf_counter() - started) * 1000, 1))
