"""Layer rules: domain is pure, services and ops never load textual,
screens and widgets never touch asyncssh or tinydb."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import itop_tui

PACKAGE_DIR = Path(itop_tui.__file__).parent


def submodules(package: str) -> list[str]:
    """``package`` and every module below it, found on disk."""
    path = PACKAGE_DIR / package.split(".", 1)[1].replace(".", "/")
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


def loaded_after_import(modules: list[str]) -> set[str]:
    """Top-level packages in sys.modules after importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("package", ["itop_tui.domain", "itop_tui.services", "itop_tui.ops"])
def test_layer_never_imports_textual(package: str) -> None:
    modules = submodules(package)
    assert len(modules) > 1, f"no modules found under {package}"
    loaded = loaded_after_import(modules)
    assert "textual" not in loaded
    assert "itop_tui" in loaded  # the import really happened


def test_each_service_and_ops_module_alone_avoids_textual() -> None:
    # Importing one module at a time catches a module that only works
    # because another one was imported first.
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] == 'textual']:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
        "    if 'textual' in sys.modules:\n"
        "        bad.append(name)\n"
        "print(' '.join(bad))\n"
    )
    modules = submodules("itop_tui.services") + submodules("itop_tui.ops")
    done = subprocess.run(
        [sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_domain_is_pure() -> None:
    loaded = loaded_after_import(submodules("itop_tui.domain"))
    assert not loaded & {"textual", "asyncssh", "tinydb", "psutil", "platformdirs"}


def test_headless_cli_does_not_import_textual() -> None:
    loaded = loaded_after_import(["itop_tui.cli", "itop_tui.settings"])
    assert "textual" not in loaded


def imported_names(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_screens_and_widgets_never_import_ssh_or_store_libraries() -> None:
    files = sorted((PACKAGE_DIR / "screens").rglob("*.py")) + sorted(
        (PACKAGE_DIR / "widgets").rglob("*.py")
    )
    assert files, "screens/ and widgets/ hold no modules"
    offenders = {
        str(f.relative_to(PACKAGE_DIR)): sorted(imported_names(f) & {"asyncssh", "tinydb"})
        for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_imported_names_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import asyncssh.connection\n    from tinydb import TinyDB\n")
    assert imported_names(sample) == {"asyncssh", "tinydb"}
