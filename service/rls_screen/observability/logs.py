"""Log output: one JSON event per line when stderr is not a terminal, text on a terminal.

``configure_logging`` installs one handler on the root logger (as ``logging.basicConfig`` does, and
like it, only when the root has none yet). RLS_SCREEN_LOG_FORMAT=json|text overrides the choice.

Each event carries correlation ids: ``hookInstance`` (bound for the CDS request being answered, a
context variable, so it follows the call into its worker thread), ``jobId`` (bound once for a batch
process, which runs one job) and, while tracing is on, the ``traceId``/``spanId`` of the current span.
The JSON form carries what the text form carries, no more: the message (which the module's log
discipline keeps free of PHI and tokens), the logger, level, time and pid. An exception adds its
class and frames, never its message (a message may quote data).
"""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from opentelemetry import trace

from rls_screen.observability.settings import ObservabilitySettings, get_observability_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HOOK_INSTANCE: ContextVar[str | None] = ContextVar("rls_screen_hook_instance", default=None)
_job_id: str | None = None


def bind_hook_instance(hook_instance: str) -> None:
    """The CDS call this task (and the worker threads it starts) is answering."""
    HOOK_INSTANCE.set(hook_instance)


def bind_job_id(job_id: str) -> None:
    """The batch job this process runs (one per process: every thread's events carry it)."""
    global _job_id
    _job_id = job_id


class CorrelationFilter(logging.Filter):
    """Puts the correlation ids on every record (``hook_instance``, ``job_id``, ``trace_id``, ``span_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.hook_instance = HOOK_INSTANCE.get()
        record.job_id = _job_id
        context = trace.get_current_span().get_span_context()
        record.trace_id = f"{context.trace_id:032x}" if context.is_valid else None
        record.span_id = f"{context.span_id:016x}" if context.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per event, on one line (a message's line breaks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for field, key in (("hook_instance", "hookInstance"), ("job_id", "jobId"), ("trace_id", "traceId")):
            value = getattr(record, field, None)
            if value:
                event[key] = value
        span_id = getattr(record, "span_id", None)
        if span_id:
            event["spanId"] = span_id
        if record.exc_info and record.exc_info[0] is not None:
            event["exception"] = record.exc_info[0].__name__
            event["frames"] = "".join(traceback.format_tb(record.exc_info[2]))
        return orjson.dumps(event, default=str).decode()


def wants_json(stream: TextIO, settings: ObservabilitySettings | None = None) -> bool:
    chosen = (settings or get_observability_settings()).log_format
    if chosen != "auto":
        return chosen == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def make_handler(stream: TextIO, text_format: str = TEXT_FORMAT, *, json: bool | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    use_json = wants_json(stream) if json is None else json
    handler.setFormatter(JsonFormatter() if use_json else logging.Formatter(text_format))
    handler.addFilter(CorrelationFilter())
    return handler


def configure_logging(level: int, *, stream: TextIO | None = None, text_format: str = TEXT_FORMAT) -> None:
    """Log at ``level`` to ``stream`` (stderr), as JSON or text; does nothing if the root logger has handlers."""
    root = logging.getLogger()
    if root.handlers:
        return
    root.addHandler(make_handler(stream or sys.stderr, text_format))
    root.setLevel(level)
