"""The panel worklist without a browser: order, change detection, write-back state, links, the runs
of a panel in the job store, the page's CSP, and a golden file of what the page shows.

The golden file tests/data/golden/worklist/second-run.json is the page's data block for the second
run of a fixed synthetic panel (job ids replaced); regenerate with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_worklist.py`` and read the diff.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.worklist_panels import panel_records, screen_run

from rls_screen.batch.jobs import JobStore, panel_key
from rls_screen.batch.report import write_report
from rls_screen.batch.worklist import (
    PanelFinding,
    PatientEntry,
    build_worklist,
    compare,
    written_kind,
)
from rls_screen.batch.worklist_page import check_link_template, data_json, patient_link
from rls_screen.errors import ConfigurationError
from rls_screen.knowledge import load_knowledge

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden" / "worklist" / "second-run.json"
KNOWLEDGE = load_knowledge()
CONCEPTS = KNOWLEDGE.terminology.concepts


def ferritin(value: str, day: str = "2026-10-09") -> tuple[str, ...]:
    return ("ferritin", f"{value} µg/L", day, f"ferritin {value} µg/L on {day}")


def entry(pid: str, *findings: PanelFinding, written: str = "unchanged") -> PatientEntry:
    return PatientEntry(pid, tuple(findings), written, ())


IRON = PanelFinding("iron-deficiency", None, (ferritin("8"),))


def kinds(current: PatientEntry, previous: PatientEntry | None) -> list[tuple[str, str]]:
    return [(c.kind, c.code) for c in compare(current, previous)]


def test_a_finding_the_patient_did_not_have_is_new_and_one_gone_is_resolved() -> None:
    low_k = PanelFinding("hypokalemia", "grade-1", ())
    assert kinds(entry("p", IRON), entry("p", low_k)) == [("new", "iron-deficiency"), ("resolved", "hypokalemia")]
    assert kinds(entry("p", IRON), None) == [("new", "iron-deficiency")]


def test_a_changed_value_or_severity_is_a_change_and_a_newer_equal_value_is_not() -> None:
    newer_same = PanelFinding("iron-deficiency", None, (ferritin("8", "2026-11-20"),))
    lower = PanelFinding("iron-deficiency", None, (ferritin("5", "2026-11-20"),))
    assert kinds(entry("p", newer_same), entry("p", IRON)) == []
    [change] = compare(entry("p", lower), entry("p", IRON))
    assert (change.kind, change.before, change.after) == (
        "changed",
        "ferritin 8 µg/L on 2026-10-09",
        "ferritin 5 µg/L on 2026-11-20",
    )
    graded = [PanelFinding("hypokalemia", severity, ()) for severity in ("grade-1", "grade-3")]
    assert kinds(entry("p", graded[1]), entry("p", graded[0])) == [("changed", "hypokalemia")]


def test_a_result_stored_without_values_is_compared_on_severity_alone() -> None:
    legacy = PanelFinding("iron-deficiency", None, ())
    assert kinds(entry("p", IRON), entry("p", legacy)) == []


@pytest.mark.parametrize(
    ("changes", "dry_run", "expected"),
    [
        ((), False, "unchanged"),
        (("RiskAssessment (1 finding(s))", "Flag iron-deficiency (new, active)"), False, "created"),
        (("RiskAssessment (1 finding(s))", "Flag anemia (updated, active)"), False, "updated"),
        (("RiskAssessment (0 finding(s))", "Flag anemia (inactive)"), False, "updated"),
        (("ServiceRequest iron studies (revoked)",), False, "updated"),
        (("Flag anemia (new, active)",), True, "dry-run"),
    ],
)
def test_what_was_written_back(changes: tuple[str, ...], dry_run: bool, expected: str) -> None:
    assert written_kind(changes, dry_run=dry_run) == expected


def test_patients_are_ordered_by_role_then_severity_then_number_of_findings() -> None:
    mimic = entry("a-mimic", PanelFinding("hypokalemia", "grade-3", ()))
    mild = entry("b-mild", PanelFinding("anemia", "mild", ()))
    severe = entry("c-severe", PanelFinding("anemia", "severe", ()))
    cause = entry("d-cause", IRON)
    cause_and_more = entry("e-cause", PanelFinding("hypomagnesemia", "grade-1", ()), IRON)
    nothing = entry("f-none")
    current = {e.patient_id: e for e in (mimic, mild, severe, cause, cause_and_more, nothing)}
    worklist = build_worklist(current, None, CONCEPTS)
    assert [row.entry.patient_id for row in worklist.rows] == ["e-cause", "d-cause", "c-severe", "b-mild", "a-mimic"]
    assert [f.code for f in worklist.rows[0].ranked] == ["iron-deficiency", "hypomagnesemia"]
    assert worklist.counts == {
        "screened": 6,
        "withFindings": 5,
        "byRole": {"established-cause": 2, "related": 2, "mimic-or-aggravator": 1},
        "changes": None,
    }


def test_a_patient_whose_findings_all_resolved_is_listed_last() -> None:
    before = {"p1": entry("p1", IRON), "p2": entry("p2", PanelFinding("hypokalemia", "grade-1", ()))}
    now = {"p1": entry("p1"), "p2": entry("p2", PanelFinding("hypokalemia", "grade-1", ()))}
    worklist = build_worklist(now, before, CONCEPTS)
    assert [(row.entry.patient_id, len(row.ranked)) for row in worklist.rows] == [("p2", 1), ("p1", 0)]
    assert worklist.counts["changes"] == {"new": 0, "changed": 0, "resolved": 1}


@pytest.mark.parametrize(
    "template",
    [
        "javascript:alert(1)//{patient_id}",
        "ftp://ehr.example.org/{patient_id}",
        "/chart/{patient_id}",
        "https://ehr.example.org/chart/",
        "https://ehr.example.org/{tenant}/{patient_id}",
        "data:text/html,{patient_id}",
    ],
)
def test_a_link_template_that_is_not_an_http_url_with_the_id_is_refused(template: str) -> None:
    with pytest.raises(ConfigurationError):
        check_link_template(template)


def test_the_patient_id_is_url_encoded_in_its_link_and_no_template_gives_no_link() -> None:
    template = check_link_template("https://ehr.example.org/chart/{patient_id}?view=rls")
    assert patient_link(template, "a/b?c#d e") == "https://ehr.example.org/chart/a%2Fb%3Fc%23d%20e?view=rls"
    assert patient_link(None, "p1") == ""
    assert check_link_template("") is None


def test_the_data_block_cannot_end_its_script_element() -> None:
    text = data_json({"rows": [["</script><script>alert(1)</script>", "<!--"]]})
    assert "<" not in text
    assert json.loads(text) == {"rows": [["</script><script>alert(1)</script>", "<!--"]]}


def test_runs_of_a_panel_are_found_by_its_identity_and_a_resumed_job_is_one_run(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    make = lambda source: store.create_job(  # noqa: E731
        created="2026-11-25T00:00:00+00:00",
        source=source,
        as_of=date(2026, 11, 25),
        dry_run=True,
        fhir_base_url="http://x/fhir",
    )
    first, other, second = make("group:Group/a"), make("group:Group/b"), make("group:Group/a")
    assert store.previous_run(first) is None
    store.record_panel_run(first, {"withFindings": 3})
    store.record_panel_run(other, {"withFindings": 9})
    assert store.previous_run(second) == first
    store.record_panel_run(second, {"withFindings": 4})
    store.record_panel_run(second, {"withFindings": 5})  # the report of a resumed job, written again
    assert [(run.job.id, run.counts) for run in store.panel_runs(second)] == [
        (first.id, {"withFindings": 3}),
        (second.id, {"withFindings": 5}),
    ]
    assert store.previous_run(second) == first
    assert store.previous_run(other) is None
    assert panel_key(first) == "http://x/fhir group:Group/a"


def _pages(tmp_path: Path) -> tuple[Any, str]:
    store = JobStore(tmp_path / "jobs.sqlite")
    screen = lambda **kw: screen_run(store, KNOWLEDGE, panel_records(40, **kw))  # noqa: E731
    first = screen()
    write_report(store, first, tmp_path, KNOWLEDGE)
    second = screen(changed=range(1, 41, 3))
    summary, html_path, _ = write_report(store, second, tmp_path, KNOWLEDGE, "https://ehr.example.org/c/{patient_id}")
    page = html_path.read_text(encoding="utf-8")
    page = page.replace(first.id, "job-FIRST").replace(second.id, "job-SECOND")
    return summary, page


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_the_page_is_self_contained_under_a_strict_csp(tmp_path: Path) -> None:
    _, page = _pages(tmp_path)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1).replace("&#x27;", "'")
    [style] = re.findall(r"<style>(.*?)</style>", page, re.S)
    [script] = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert f"style-src '{_sha256(style)}'" in csp
    assert f"script-src '{_sha256(script)}'" in csp
    assert "default-src 'none'" in csp
    assert not re.search(r"\b(src|srcset)=", page)
    assert "<link" not in page
    hosts = set(re.findall(r"https?://([^/\"'\s]+)", page))
    assert hosts <= {"www.w3.org", "ehr.example.org"}, hosts  # the SVG namespace and the configured links
    assert ' style="' not in page  # inline style attributes would need 'unsafe-inline'


def test_the_templates_ship_as_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "templates/*" in config["package-data"]["rls_screen.batch"]
    templates = REPO / "service" / "rls_screen" / "batch" / "templates"
    assert {p.name for p in templates.iterdir()} >= {"worklist.html", "worklist.js", "worklist.css"}


def test_the_worklist_a_person_reads_matches_its_golden_file(tmp_path: Path) -> None:
    summary, page = _pages(tmp_path)
    [block] = re.findall(r'<script type="application/json" id="worklist-data">(.*?)</script>', page, re.S)
    data = json.loads(block)
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
    assert data["previousRun"] == {"job": "job-FIRST", "asOf": "2026-11-25"}
    assert summary.worklist is not None
    assert len(data["rows"]) == len(summary.worklist.rows)


def _cli_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: Path, template: str) -> int:
    from rls_screen.cli import main
    from rls_screen.settings import get_settings

    monkeypatch.setenv("RLS_SCREEN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("RLS_SCREEN_PATIENT_LINK_TEMPLATE", template)
    get_settings.cache_clear()
    argv = ["batch", "--ndjson", str(directory), "--dry-run", "--as-of", "2026-11-25"]
    argv += ["--job-db", str(tmp_path / "jobs.sqlite"), "--report-dir", str(tmp_path / "reports")]
    try:
        return main(argv)
    finally:
        get_settings.cache_clear()


def test_rls_screen_batch_compares_with_the_previous_run_and_links_each_patient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rls_screen.synth import generate_panel, write_ndjson

    directory = tmp_path / "export"
    write_ndjson(generate_panel(12, seed=5, as_of=date(2026, 11, 25), id_prefix="cli"), directory)
    template = "https://ehr.example.org/chart/{patient_id}"
    assert _cli_batch(tmp_path, monkeypatch, directory, template) == 0
    assert "First run of this panel" in capsys.readouterr().out
    assert _cli_batch(tmp_path, monkeypatch, directory, template) == 0
    out = capsys.readouterr().out
    assert re.search(r"Since the previous run of this panel \(job-\w+, as of 2026-11-25\): 0 new, 0 changed", out)
    newest = max((tmp_path / "reports").glob("*.html"), key=lambda p: p.stat().st_mtime_ns)
    assert '"linkTemplate":"https://ehr.example.org/chart/{patient_id}"' in newest.read_text(encoding="utf-8")


def test_rls_screen_batch_refuses_a_link_template_that_is_not_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rls_screen.synth import generate_panel, write_ndjson

    directory = tmp_path / "export"
    write_ndjson(generate_panel(2, seed=5, as_of=date(2026, 11, 25), id_prefix="cli"), directory)
    assert _cli_batch(tmp_path, monkeypatch, directory, "javascript:alert({patient_id})") == 3
    assert "RLS_SCREEN_PATIENT_LINK_TEMPLATE" in capsys.readouterr().err
    assert not list((tmp_path / "reports").glob("*.html"))
