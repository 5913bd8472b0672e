"""`pip install .` ships every subpackage and the data folders (an editable install would hide a gap)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_code_subpackage_and_data_folder_is_packaged() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    root = REPO / "service" / "rls_screen"
    code_packages = {
        "rls_screen" + "".join(f".{part}" for part in init.parent.relative_to(root).parts)
        for init in root.rglob("__init__.py")
    }
    assert code_packages <= listed
    assert {"rls_screen.terminology", "rls_screen.mappings"} <= listed
    assert config["package-dir"]["rls_screen.terminology"] == "terminology"
    assert config["package-dir"]["rls_screen.mappings"] == "mappings"
    data = config["package-data"]
    assert "*.json" in data["rls_screen.terminology"]
    assert "conceptmaps/*.json" in data["rls_screen.mappings"]
    assert "*.json" in data["rls_screen.ruleset"]
    # docs/rules.md, the rules' complete statement, ships beside the code (ruledocs reads it there when installed)
    assert config["package-dir"]["rls_screen.spec"] == "docs"
    assert data["rls_screen.spec"] == ["rules.md"]
