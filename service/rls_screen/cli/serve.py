"""``rls-screen serve``: run the CDS Hooks 2.0 service under uvicorn (default 127.0.0.1:8090).

Configuration comes from the environment (``rls_screen.cds.settings``, ``rls_screen.settings``);
the command only chooses where to listen. Development mode (RLS_SCREEN_CDS_DEV_MODE=true, JWT
verification off) is refused on anything but a loopback address.
"""

from __future__ import annotations

import argparse
import logging

from rls_screen.errors import ConfigurationError
from rls_screen.fhir_client import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from rls_screen.cds import create_app
    from rls_screen.cds.settings import get_cds_settings

    settings = get_cds_settings()
    if settings.cds_dev_mode and not is_loopback(args.host):
        raise ConfigurationError(
            f"refusing to serve on {args.host} with RLS_SCREEN_CDS_DEV_MODE=true (JWT verification off); "
            "use a loopback address or turn dev mode off"
        )
    app = create_app(settings)
    logging.getLogger("rls_screen").setLevel(logging.INFO)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        workers=None,
        log_level=args.log_level,
        access_log=args.access_log,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
    )
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
    parser.set_defaults(run=run)
