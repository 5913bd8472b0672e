"""A HAPI FHIR server of the resilience tests' own, which a test may kill and restart.

deploy/fhir-up.sh with a private FHIR_RUN_DIR and FHIR_PORT, so the shared server is never touched;
``kill`` sends SIGKILL to that instance's JVM only (the pid from its own run directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 400
# The instance serves a few hundred requests and is started twice: the C1 compiler only and the
# serial collector cut its start-up by a fifth on a 2-core machine; steady-state speed is irrelevant.
FAST_START_JAVA_OPTS = "-Xmx1g -XX:+ExitOnOutOfMemoryError -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SeparateHapi:
    """A HAPI FHIR server of our own (deploy/fhir-up.sh in a private run dir), safe to kill."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="rls-resilience-hapi-"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self._launch: subprocess.Popen[bytes] | None = None
        self.start_seconds: list[float] = []
        self._started_at = 0.0

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FHIR_PORT": str(self.port),
            "FHIR_RUN_DIR": str(self.run_dir),
            "FHIR_START_TIMEOUT": str(START_TIMEOUT_S),
            "FHIR_JAVA_OPTS": os.environ.get("FHIR_JAVA_OPTS", FAST_START_JAVA_OPTS),
        }

    def launch(self) -> None:
        """Start fhir-up.sh in the background (returns at once)."""
        self._started_at = time.monotonic()
        log = (self.run_dir / "fhir-up.out").open("ab")
        self._launch = subprocess.Popen(
            [str(REPO / "deploy" / "fhir-up.sh")], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_ready(self) -> str:
        if self._launch is None:
            self.launch()
        assert self._launch is not None
        try:
            code = self._launch.wait(timeout=START_TIMEOUT_S + 60)
        finally:
            self._launch = None
        output = (self.run_dir / "fhir-up.out").read_text(errors="replace")[-3000:]
        assert code == 0, f"fhir-up.sh failed ({code}):\n{output}"
        self.start_seconds.append(round(time.monotonic() - self._started_at, 1))
        return self.base_url

    def restart(self) -> str:
        self.launch()
        return self.wait_ready()

    def pid(self) -> int:
        return int((self.run_dir / "fhir-server.pid").read_text().strip())

    def kill(self) -> None:
        """SIGKILL the JVM this instance runs (its pid from our own run dir), and wait until it is gone."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists() and stat.read_text().split()[2] == "Z":
                return  # a zombie (its parent reaps it later) no longer serves anything
            time.sleep(0.1)
        raise AssertionError(f"the FHIR server (pid {pid}) survived SIGKILL")

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/metadata", timeout=(1, 5)).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self._launch is not None and self._launch.poll() is None:
            self._launch.terminate()  # fhir-up.sh stops the half-started server on TERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._launch.wait(timeout=30)
        subprocess.run(
            [str(REPO / "deploy" / "fhir-down.sh")], env=self.env, timeout=120, check=False, capture_output=True
        )
        shutil.rmtree(self.run_dir, ignore_errors=True)
