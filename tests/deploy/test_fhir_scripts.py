"""The deploy scripts fail fast and clearly: port taken, Java missing, Maven missing."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UP = REPO / "deploy" / "fhir-up.sh"
BUILD = REPO / "deploy" / "fhir-server" / "build.sh"


def run(command: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_a_taken_port_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "FHIR_PORT": str(port), "FHIR_RUN_DIR": str(tmp_path / "run")}
        code, output, seconds = run([str(UP)], env, timeout=600)
    assert code != 0
    assert f"port {port} is already in use" in output
    assert seconds < 300  # a possible first build aside, no waiting for a server that cannot start


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every usual tool except ``missing`` (symlinks into a private bin directory)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(directory).iterdir() if Path(directory).is_dir() else []:
            if tool.name not in missing and not (fake_bin / tool.name).exists():
                (fake_bin / tool.name).symlink_to(tool)
    return str(fake_bin)


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FHIR_JAVA_HOME": str(tmp_path / "no-java"),
        "FHIR_RUN_DIR": str(tmp_path / "run"),
        "FHIR_PORT": "18099",
    }
    code, output, seconds = run([str(UP)], env)
    assert code != 0
    assert "is not a Java 17+" in output
    assert seconds < 30


def test_missing_maven_is_a_clear_error_when_a_build_is_needed(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": path_without(tmp_path, "mvn", "mvnw")}
    code, output, seconds = run([str(BUILD), "--force"], env)
    assert code != 0
    assert "mvn" in output.lower() or "maven" in output.lower()
    assert seconds < 30
