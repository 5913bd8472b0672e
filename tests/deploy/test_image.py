"""What can be tested of the container image without building it (no base image can be pulled here).

- The lock the Containerfile installs holds every pin of pyproject.toml, at the same version.
- ``relocate-data.sh`` on a real installed package (``pip install --target``): the module still loads
  its knowledge, through the symlinks, and a file replaced under the data root (as a mounted volume
  would) is what it reads.
- ``entrypoint.sh`` with the environment, mounts and Secret the Helm chart renders: it starts
  ``rls-screen serve`` with the chart's workers, answers /health, /ready and /metrics, and refuses to
  start when a mounted Secret is missing. Paths the chart mounts are placed under a temporary root;
  the host is loopback instead of the chart's 0.0.0.0 (tests listen on loopback only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from tests.resilience.hapi_instance import free_port
from tests.support.metrics_text import samples

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "deploy" / "image"
CHART = REPO / "deploy" / "helm" / "rls-screen"


def _pin(requirement: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^;\s]+)\s*(?:;.*)?", requirement)
    return (re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)) if match else None


@pytest.mark.unit
def test_the_image_lock_pins_what_pyproject_pins() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {pin for r in [*project["dependencies"], *project["optional-dependencies"]["otel"]] if (pin := _pin(r))}
    lock_lines = (IMAGE / "requirements.lock").read_text(encoding="utf-8").splitlines()
    locked = {pin for line in lock_lines if not line.startswith("#") and (pin := _pin(line))}
    assert len(wanted) > 10
    assert wanted <= locked, sorted(wanted - locked)
    assert len({name for name, _ in locked}) == len(locked)  # one version per package


@pytest.mark.slow
def test_relocated_data_is_read_through_the_data_root(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(REPO)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    data = tmp_path / "srv"
    subprocess.run(["sh", str(IMAGE / "relocate-data.sh"), str(site / "rls_screen"), str(data)], check=True)
    assert (site / "rls_screen" / "terminology").is_symlink()
    assert {p.name for p in data.iterdir()} == {"terminology", "mappings", "ruleset"}
    assert (data / "mappings" / "units.json").is_file()
    # A site's rule set, as a mounted volume would put it there.
    ruleset = next((data / "ruleset").glob("*.json"))
    document = json.loads(ruleset.read_text(encoding="utf-8"))
    document["version"] = "2026.2-site"
    ruleset.unlink()
    ruleset.write_text(json.dumps(document), encoding="utf-8")
    probe = (
        "import rls_screen, sys\n"
        "from rls_screen.knowledge import load_knowledge\n"
        "k = load_knowledge()\n"
        "from rls_screen.ruledocs import RULES_MD, RuleDocs\n"
        "print(rls_screen.__file__, k.ruleset.version, len(k.terminology.value_sets), RULES_MD,"
        " RuleDocs.load().spec_version, sep='|')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True).stdout
    module_file, version, value_sets, rules_md, spec_version = out.strip().split("|")
    assert module_file.startswith(str(site))
    # docs/rules.md ships in the package: the installed service's rule pages carry the full statement
    assert rules_md.startswith(str(site))
    assert spec_version.startswith("20")
    assert version == "2026.2-site"
    assert int(value_sets) > 20


def _rendered(values: str, *sets: str) -> list[dict[str, Any]]:
    tools = subprocess.run(
        [str(REPO / "deploy" / "tools" / "install-helm-tools.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=1100,
    ).stdout.strip()
    command = [f"{tools}/helm", "template", "rls", str(CHART), "--kube-version", "1.35.4", "-f", values]
    for item in sets:
        command += ["--set", item]
    text = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _chart_environment(objects: list[dict[str, Any]], root: Path) -> tuple[dict[str, str], list[str]]:
    """The serve container's env and args, with the Secret's values and every mounted path under ``root``."""
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    env: dict[str, str] = {}
    for item in container["env"]:
        if "valueFrom" in item:
            env[item["name"]] = secret["stringData"][item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            value = item["value"]
            env[item["name"]] = str(root) + value if any(value.startswith(m) for m in mounts) else value
    for mount in mounts:
        (root / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for key, value in secret["stringData"].items():  # the Secret volume, mounted as the chart mounts it
        (root / "etc/rls-screen/secrets" / key).write_text(value, encoding="utf-8")
    return env, container["args"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the first run on a new machine builds helm (make deploy-check does it first in CI)
def test_the_entrypoint_starts_serve_with_the_chart_environment(tmp_path: Path) -> None:
    objects = _rendered(str(REPO / "deploy" / "helm" / "minimal-values.yaml"), "workers=2")
    env, args = _chart_environment(objects, tmp_path / "root")
    assert args == ["serve"]
    assert env["RLS_SCREEN_WORKERS"] == "2"
    assert (env["RLS_SCREEN_DRAIN_SECONDS"], env["RLS_SCREEN_GRACEFUL_TIMEOUT"]) == ("5", "15")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 5 + 15 + 5
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(str(tmp_path / "root"))
    port = free_port()
    env |= {
        "RLS_SCREEN_HOST": "127.0.0.1",
        "RLS_SCREEN_PORT": str(port),
        "RLS_SCREEN_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RLS_SCREEN_", "PROMETHEUS_"))}
    environment |= env | {"RLS_SCREEN_BIN": str(Path(sys.executable).parent / "rls-screen")}
    log_path = tmp_path / "entrypoint.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["sh", str(IMAGE / "entrypoint.sh"), *args], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
        ready = requests.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["jwt"] == "verifying"  # production mode, issuers from the Secret
        assert requests.get(f"{base}/cds-services", timeout=5).status_code == 401
        samples(requests.get(f"{base}/metrics", timeout=5).text)
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in command  # the entrypoint exec'd rls-screen itself (PID stays the same)
        assert command[command.index(b"--workers") : command.index(b"--workers") + 2] == [b"--workers", b"2"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert events, "the chart's RLS_SCREEN_LOG_FORMAT=json gives JSON events"
    assert (tmp_path / "root" / "var/lib/rls-screen").is_dir()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_entrypoint_refuses_to_start_without_the_mounted_secret(tmp_path: Path) -> None:
    objects = _rendered(str(REPO / "deploy" / "helm" / "minimal-values.yaml"))
    env, args = _chart_environment(objects, tmp_path / "root")
    (tmp_path / "root" / "etc/rls-screen/secrets/trusted-issuers.json").unlink()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLS_SCREEN_")} | env
    result = subprocess.run(
        ["sh", str(IMAGE / "entrypoint.sh"), *args], env=environment, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3
    assert "trusted-issuers.json is not readable (is the Secret mounted?)" in result.stderr


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(1200)
def test_the_migrate_init_container_brings_a_postgresql_state_store_up_to_date(
    tmp_path: Path, postgres_url: str
) -> None:
    """stateStore postgresql: the pod's init container (`state migrate`) run through the entrypoint with the chart's
    environment migrates every component of an empty database once; `state status` then says up to date (exit 0)."""
    objects = _rendered(
        str(REPO / "deploy" / "helm" / "minimal-values.yaml"),
        "stateStore=postgresql",
        f"secrets.stateUrl={postgres_url}",
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["args"] == ["state", "migrate"]
    env, _ = _chart_environment(objects, tmp_path / "root")
    assert env["RLS_SCREEN_STATE_URL"] == postgres_url
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RLS_SCREEN_")} | env
    environment["RLS_SCREEN_BIN"] = str(Path(sys.executable).parent / "rls-screen")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["sh", str(IMAGE / "entrypoint.sh"), *args]
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)

    before = run("state", "status")
    assert before.returncode == 1, before.stderr  # an empty database: work for migrate
    migrated = run(*init["args"])
    assert migrated.returncode == 0, migrated.stderr
    after = run("state", "status")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "cds-feedback" in after.stdout
    assert "jwt-replay" in after.stdout
    assert run(*init["args"]).returncode == 0  # a second pod starting: nothing left to do
