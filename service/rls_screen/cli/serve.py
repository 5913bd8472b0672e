"""``rls-screen serve``: run the CDS Hooks 2.0 service under uvicorn (default 127.0.0.1:8090).

Configuration comes from the environment (``rls_screen.cds.settings``, ``rls_screen.settings``);
the command only chooses where to listen and how many worker processes answer. Development mode
(RLS_SCREEN_CDS_DEV_MODE=true, JWT verification off) is refused on anything but a loopback address.

``--workers N`` runs N uvicorn worker processes on one socket (one per core is the usual choice: a
call is CPU-bound, ~5 ms of Python). The workers share the state store (feedback, override
suppression and the JWT replay cache: RLS_SCREEN_STATE_URL, PostgreSQL for several replicas, else one
SQLite file), so a token used on one worker or replica is refused by every other. The configuration
is checked once in the parent before any worker starts.

The access log (on by default) names the path only: uvicorn's own lines carry the query string, and
a query may carry a secret (a client that sends its JWT as ``?access_token=``), so ``log_config()``
installs ``PathOnlyAccessLog`` on uvicorn's access logger, in the parent and in every worker. Its
lines, like every other, are JSON when stderr is not a terminal (``rls_screen.observability.logs``).

With several workers, GET /metrics answers the sum over all of them: prometheus-client's multiprocess
mode, through PROMETHEUS_MULTIPROC_DIR (if unset, ``<state dir>/metrics-<port>``), emptied before
the workers start (also with one worker when it is set, as the chart does).

On SIGTERM the service stops accepting, lets the calls in flight finish for up to ``--graceful-timeout``
seconds and exits 0; ``--drain-seconds`` first answers ``/ready`` with 503 while still serving, so a load
balancer stops sending before the socket closes (``rls_screen.cli.shutdown``; docs/deploy.md).
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rls_screen.errors import ConfigurationError
from rls_screen.fhir_client import is_loopback
from rls_screen.observability.logs import configure_logging, wants_json
from rls_screen.observability.metrics import MULTIPROC_ENV, use_multiprocess
from rls_screen.settings import get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
DEFAULT_GRACEFUL_TIMEOUT_S = 15.0
"""Above the longest call (RLS_SCREEN_CDS_DEADLINE_MS, 3 s by default, at most 60 s) in the usual setup, and with a
drain of a few seconds still inside Kubernetes' default 30 s termination grace period."""
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"
"""With several workers, each line says which process wrote it (an on-call engineer follows one call)."""


class PathOnlyAccessLog(logging.Filter):
    """Cuts the query string from uvicorn's access lines, whose arguments are (client, method, path?query,
    http version, status); a record of any other shape is dropped rather than risk writing a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str)):
            return False
        record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with ``PathOnlyAccessLog`` on its access logger (a plain dict:
    uvicorn hands it to each worker process)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["path_only"] = {"()": f"{__name__}.PathOnlyAccessLog"}
    config["loggers"]["uvicorn.access"]["filters"] = ["path_only"]
    config["filters"]["correlation"] = {"()": "rls_screen.observability.logs.CorrelationFilter"}
    for handler in config["handlers"].values():
        handler["filters"] = ["correlation"]
    if wants_json(sys.stderr):
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "rls_screen.observability.logs.JsonFormatter"
    return config


def worker_app() -> FastAPI:
    """The app factory each worker process calls (uvicorn --factory): logging first, then the app."""
    from rls_screen.cds import create_app
    from rls_screen.cli.shutdown import drain_seconds_of_worker, graceful_lifespan

    configure_logging(logging.WARNING, stream=sys.stderr, text_format=WORKER_LOG_FORMAT)
    logging.getLogger("rls_screen").setLevel(logging.INFO)
    return graceful_lifespan(create_app(), drain_seconds_of_worker())


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from rls_screen.cds import create_app
    from rls_screen.cds.settings import get_cds_settings
    from rls_screen.cli.shutdown import graceful_lifespan, serve_until_stopped

    settings = get_cds_settings()
    if settings.cds_dev_mode and not is_loopback(args.host):
        raise ConfigurationError(
            f"refusing to serve on {args.host} with RLS_SCREEN_CDS_DEV_MODE=true (JWT verification off); "
            "use a loopback address or turn dev mode off"
        )
    # Before the first metric is made: several workers sum their figures through files, in a directory
    # emptied now (a container restarted in the same pod keeps its emptyDir, and old counts with it).
    default_dir = get_settings().state_dir / f"metrics-{args.port}" if args.workers > 1 else None
    metrics_dir = os.environ.get(MULTIPROC_ENV) or default_dir
    if metrics_dir:
        use_multiprocess(Path(metrics_dir))
    app = create_app(settings)  # in the parent too: a bad configuration fails here, before any worker starts
    logging.getLogger("rls_screen").setLevel(logging.INFO)
    config = uvicorn.Config(
        graceful_lifespan(app, args.drain_seconds) if args.workers == 1 else f"{__name__}:worker_app",
        factory=args.workers > 1,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        log_level=args.log_level,
        access_log=args.access_log,
        log_config=log_config(),
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    serve_until_stopped(config, args.drain_seconds)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the CDS Hooks 2.0 service (patient-view, order-select, order-sign)",
        description="Serve the CDS Hooks services over HTTP with uvicorn. Settings come from the environment: "
        "RLS_SCREEN_PUBLIC_URL, RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE, FHIR_BASE_URL, RLS_SCREEN_FHIR_ALLOWLIST "
        "and the other RLS_SCREEN_CDS_* knobs (docs/cds-hooks.md). Put it behind a TLS-terminating proxy.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="worker processes (default 1; one per core for throughput, see docs/benchmarks.md)",
    )
    parser.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), default="info")
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="uvicorn access log (paths only)"
    )
    parser.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="trust X-Forwarded-* from --forwarded-allow-ips",
    )
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    parser.add_argument(
        "--graceful-timeout",
        type=_seconds,
        default=DEFAULT_GRACEFUL_TIMEOUT_S,
        help="on SIGTERM, seconds the calls in flight get to finish before they are cancelled "
        f"(default {DEFAULT_GRACEFUL_TIMEOUT_S:g}; a call is bounded by RLS_SCREEN_CDS_DEADLINE_MS)",
    )
    parser.add_argument(
        "--drain-seconds",
        type=_seconds,
        default=0.0,
        help="on SIGTERM, first answer GET /ready with 503 and keep serving this long, so a load balancer's "
        "health check takes the replica out before it stops accepting (default 0: stop accepting at once)",
    )
    parser.set_defaults(run=run)


def _worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("between 0 and 600 seconds")
    return value
