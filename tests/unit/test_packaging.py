"""The wheel ships every package and the bundled config."""

from __future__ import annotations

import tomllib
from pathlib import Path

from itop_tui.bundled import config_dir, procedures_dir

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "itop_tui").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = found - listed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_bundled_config_is_found() -> None:
    assert (config_dir() / "itop.example.yaml").is_file()
    assert len(list(procedures_dir().glob("*.yaml"))) >= 10
