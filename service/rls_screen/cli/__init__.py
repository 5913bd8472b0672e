"""The ``rls-screen`` console script: one module per subcommand, each exposing ``register``.

Each subcommand returns an exit code; ``RlsScreenError`` subclasses map to their own exit codes and
one line on stderr (see ``rls_screen.errors``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rls_screen import __version__
from rls_screen.errors import RlsScreenError
from rls_screen.observability.logs import configure_logging
from rls_screen.observability.tracing import configure_tracing

from . import batch, demo, evaluate, screen, serve, state, subscribe, synth


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rls-screen",
        description="Screen restless legs syndrome patients for treatable secondary causes (FHIR R4).",
    )
    parser.add_argument("--version", action="version", version=f"rls-screen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level on stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (evaluate, screen, batch, demo, synth, serve, subscribe, state):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # JSON lines when stderr is not a terminal, text on one (RLS_SCREEN_LOG_FORMAT overrides)
    configure_logging(logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        configure_tracing()  # only when RLS_SCREEN_OTLP_ENDPOINT is set
        code: int = args.run(args)
    except RlsScreenError as error:
        print(f"rls-screen {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"rls-screen {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
