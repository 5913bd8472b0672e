"""Real processes for the replica tests: ``rls-screen serve`` replicas and the HAProxy of deploy/lb-up.sh.

``Replica`` runs ``python -m rls_screen.cli serve`` as a child process (its log goes to a file: a pipe
could fill and stall it); ``Balancer`` starts and stops HAProxy through the repo's own scripts, with its
own run directory and port, and reads the servers' states from HAProxy's stats socket.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
HAPROXY_UP = 2  # srv_op_state in "show servers state": SRV_ST_RUNNING


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # a timeout: the kernel accepted the handshake but nobody serves it
        return False


def wait_until(predicate: object, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval_s)
    return False


@dataclass
class Replica:
    """One ``rls-screen serve`` process on ``port``; ``env`` is added to this process's environment."""

    port: int
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        command = [sys.executable, "-m", "rls_screen.cli", "serve", "--port", str(self.port), "--no-access-log"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.args],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, timeout_s: float = 90) -> Replica:
        if not wait_until(self._ready, timeout_s, 0.2):
            raise RuntimeError(f"replica on {self.port} not ready: {self.log()[-3000:]}")
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"replica on {self.port} exited: {self.log()[-3000:]}")
        try:
            return requests.get(self.url + "/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


@dataclass
class Balancer:
    """HAProxy from deploy/lb-up.sh on ``port`` in front of ``backends``, run from ``run_dir``."""

    port: int
    backends: list[int]
    run_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LB_PORT": str(self.port),
            "LB_BACKENDS": ",".join(f"127.0.0.1:{p}" for p in self.backends),
            "LB_RUN_DIR": str(self.run_dir),
        }

    def start(self) -> Balancer:
        result = subprocess.run(
            [str(REPO / "deploy" / "lb-up.sh")], env=self._env(), capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise RuntimeError(f"lb-up.sh failed ({result.returncode}): {result.stderr[-3000:]}")
        return self

    def stop(self) -> None:
        subprocess.run([str(REPO / "deploy" / "lb-down.sh")], env=self._env(), check=False, timeout=60)

    def server_states(self) -> dict[str, int]:
        """Each replica's operational state as HAProxy sees it (2 = up), from its stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.run_dir / "haproxy.sock"))
            sock.sendall(b"show servers state replicas\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        states = {}
        for line in answer.decode().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[0].isdigit():
                states[fields[3]] = int(fields[5])
        return states

    def wait_all_up(self, timeout_s: float = 30) -> None:
        def all_up() -> bool:
            states = self.server_states()
            return len(states) == len(self.backends) and all(s == HAPROXY_UP for s in states.values())

        if not wait_until(all_up, timeout_s, 0.2):
            raise RuntimeError(f"HAProxy does not see every replica up: {self.server_states()}")

    def log(self) -> str:
        path = self.run_dir / "haproxy.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
