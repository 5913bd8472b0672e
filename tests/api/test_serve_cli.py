"""``rls-screen serve``: the subcommand starts the service; dev mode is refused off loopback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from tests.api.helpers import ISSUER, NORMAL, PATIENT_VIEW, full_prefetch, jwk, labs, patient_view_request

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


@pytest.mark.net
@pytest.mark.parametrize(("workers", "log_format"), [("1", "text"), ("2", "text"), ("1", "json"), ("2", "json")])
def test_the_access_log_names_paths_never_query_strings(tmp_path: Path, workers: str, log_format: str) -> None:
    """The real ``rls-screen serve``, access log on: a token sent as ?access_token= never reaches its output,
    in text lines or in JSON events (the default when the output is not a terminal, as here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = f"eyJsecret{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "RLS_SCREEN_CDS_DEV_MODE": "true",
        "RLS_SCREEN_CDS_FEEDBACK_DB": str(tmp_path / "cds.sqlite3"),
        "RLS_SCREEN_STATE_DIR": str(tmp_path),
        "RLS_SCREEN_LOG_FORMAT": log_format,
    }
    command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port), "--workers", workers]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert requests.get(f"{base}/cds-services?access_token={secret}", timeout=10).status_code == 200
        feedback = requests.post(f"{base}/cds-services/{PATIENT_VIEW}/feedback?token={secret}&x=1", json={}, timeout=10)
        assert feedback.status_code == 400
        time.sleep(0.5)  # the access line is written after the response
    finally:
        process.terminate()
        raw, _ = process.communicate(timeout=30)
    output = raw if log_format == "text" else "\n".join(json.loads(line)["message"] for line in raw.splitlines())
    assert secret not in raw
    assert '"GET /cds-services HTTP/1.1" 200' in output, output[-2000:]
    assert f'"POST /cds-services/{PATIENT_VIEW}/feedback HTTP/1.1" 400' in output, output[-2000:]
    assert secret not in output
    assert "access_token" not in output


@pytest.mark.unit
def test_access_records_of_an_unknown_shape_are_dropped() -> None:
    def record(args: tuple[object, ...]) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.access", logging.INFO, "x", 1, "%s", args, None)

    only_path = record(("127.0.0.1:1", "GET", "/a?access_token=s", "1.1", 200))
    assert serve.PathOnlyAccessLog().filter(only_path)
    assert only_path.args == ("127.0.0.1:1", "GET", "/a", "1.1", 200)
    assert not serve.PathOnlyAccessLog().filter(record(("GET /a?access_token=s",)))


@pytest.mark.unit
def test_worker_count_is_checked() -> None:
    assert _parser().parse_args(["serve", "--workers", "2"]).workers == 2
    for bad in ("0", "-1", "two", "65"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--workers", bad])


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.net
def test_two_workers_serve_and_share_the_jwt_replay_cache(tmp_path: Path) -> None:
    """Production mode with --workers 2: a token answered once is refused by whichever worker gets it next."""
    private = ec.generate_private_key(ec.SECP384R1())
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({ISSUER: {"jwks": {"keys": [jwk(private.public_key(), "k1", "ES384")]}}}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RLS_SCREEN_PUBLIC_URL": base,
        "RLS_SCREEN_CDS_TRUSTED_ISSUERS_FILE": str(issuers),
        "RLS_SCREEN_STATE_DIR": str(tmp_path),
        "RLS_SCREEN_CDS_SUBJECT_SALT": "test",
        "RLS_SCREEN_LOG_FORMAT": "text",  # the [pid N] of each line is read below
    }
    command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    service = f"/cds-services/{PATIENT_VIEW}"
    body = patient_view_request("w1", full_prefetch("w1", labs("w1", **NORMAL)))

    def token() -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": base + service, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        return jwt.encode(claims, private, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})

    def post(bearer: str) -> int:
        # A new connection each time, so the kernel may hand it to either worker.
        headers = {"Authorization": f"Bearer {bearer}", "Connection": "close"}
        return requests.post(base + service, json=body, headers=headers, timeout=30).status_code

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200 and len(_children(process.pid)) >= 2:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the service did not start two workers"
            time.sleep(0.2)
        workers = _children(process.pid)
        used = token()
        assert post(used) == 200
        # Concurrent connections keep one worker busy, so the other accepts some of them.
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda _: post(used), range(40))) == [401] * 40
        assert [post(token()) for _ in range(6)] == [200] * 6
    finally:
        process.terminate()
        _, log = process.communicate(timeout=30)
    # Each worker's lines name its pid, and only the two workers answered. (Which worker the kernel hands
    # a connection to is not controllable: test_auth.py's two-instances test proves the shared cache.)
    served = [int(m) for m in re.findall(r"\[pid (\d+)\] rls_screen[\w.]*: cds: rls-secondary-causes", log)]
    refused = [int(m) for m in re.findall(r"\[pid (\d+)\] rls_screen[\w.]*: cds: 401 .*replay", log)]
    assert len(served) == 7, log[-2000:]
    assert len(refused) == 40, log[-2000:]
    assert set(served) | set(refused) <= set(workers)
