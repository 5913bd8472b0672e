"""bench/replay.py: the raw side of the module-vs-raw benchmarks must send panel B what the module sent panel A.

Pure: recorded requests in, renamed requests out (no server). A rename that leaves panel A's RiskAssessment
identifiers (hashes over the patient id) makes the raw side find the module's resources and write less.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rls_screen.writeback import RISK_ASSESSMENT_ID_SYSTEM

pytestmark = pytest.mark.unit


def _replay() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "replay.py"
    spec = importlib.util.spec_from_file_location("bench_replay", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _recording(hash_value: str) -> dict[str, list[tuple[str, str, bytes | None, dict[str, str]]]]:
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "RiskAssessment",
                    "identifier": [{"system": RISK_ASSESSMENT_ID_SYSTEM, "value": hash_value}],
                    "subject": {"reference": "Patient/pxa-1"},
                },
                "request": {
                    "method": "POST",
                    "url": "RiskAssessment",
                    "ifNoneExist": f"identifier={RISK_ASSESSMENT_ID_SYSTEM}|{hash_value}",
                },
            }
        ],
    }
    state_read = f"http://x/fhir/RiskAssessment?identifier={RISK_ASSESSMENT_ID_SYSTEM}%7C{hash_value}"
    return {"pxa-1": [("POST", state_read, None, {}), ("POST", "http://x/fhir", json.dumps(transaction).encode(), {})]}


def test_the_rename_gives_panel_b_its_own_risk_assessment_identifiers() -> None:
    hash_value = "ab" * 16
    [[(_, url, _, _), (_, _, body, _)]] = _replay().renamed(_recording(hash_value), ("pxa", "pxb"))
    assert body is not None
    sent = json.loads(body)["entry"][0]
    new_value = sent["resource"]["identifier"][0]["value"]
    assert new_value != hash_value
    assert len(new_value) == len(hash_value)
    assert sent["request"]["ifNoneExist"].endswith(f"|{new_value}")
    assert url.endswith(f"%7C{new_value}")  # the pre-write read asks for B's identifier, not A's
    assert sent["resource"]["subject"]["reference"] == "Patient/pxb-1"
    assert hash_value not in body.decode() + url


def test_next_pages_are_taken_in_the_order_the_module_follows_them() -> None:
    searchset = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": "u2"}]}
    batch = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {"resource": {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "self", "url": "s"}]}},
            {"resource": {**searchset, "link": [{"relation": "next", "url": "obs-2"}]}},
            {"resource": {**searchset, "link": [{"relation": "next", "url": "cond-2"}]}},
        ],
    }
    links = _replay()._next_links
    assert links(batch) == ["obs-2", "cond-2"]
    assert links(searchset) == ["u2"]
