"""``rls-screen serve``: the subcommand starts the service; dev mode is refused off loopback."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rls_screen.cds.settings import get_cds_settings
from rls_screen.cli import serve
from rls_screen.errors import ConfigurationError

# Runs the subcommand through its own register(), as cli/__init__.py will.
LAUNCH = (
    "import argparse, sys\n"
    "from rls_screen.cli import serve\n"
    "parser = argparse.ArgumentParser(prog='rls-screen')\n"
    "serve.register(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.run(args))\n"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rls-screen")
    serve.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.mark.unit
def test_defaults() -> None:
    args = _parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8090)


@pytest.mark.unit
def test_dev_mode_is_refused_on_a_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLS_SCREEN_CDS_DEV_MODE", "true")
    get_cds_settings.cache_clear()
    try:
        args = _parser().parse_args(["serve", "--host", "0.0.0.0"])
        with pytest.raises(ConfigurationError, match="dev"):
            args.run(args)
    finally:
        get_cds_settings.cache_clear()


@pytest.mark.net
def test_serve_starts_the_service(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "RLS_SCREEN_CDS_DEV_MODE": "true",
        "RLS_SCREEN_CDS_FEEDBACK_DB": str(tmp_path / "cds.sqlite3"),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 200
        assert len(response.json()["services"]) == 3
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "DEVELOPMENT MODE" in stderr
