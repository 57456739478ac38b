"""The real ``ansible-inventory --list``, for tests comparing itop's inventories with Ansible's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def ansible_list(path: Path, tmp_path: Path) -> dict[str, Any]:
    """What ``ansible-inventory -i PATH --list`` prints, with every file Ansible
    might write kept under ``tmp_path``."""
    exe = shutil.which("ansible-inventory")
    if exe is None:
        pytest.skip("ansible-inventory not found: install ansible-core (the test command does this)")
    work = tmp_path / "ansible-work"
    work.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_CONFIG=str(work / "none.cfg"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_NOCOLOR="1",
    )
    done = subprocess.run(
        [exe, "-i", str(path), "--list"], capture_output=True, text=True, env=env, cwd=work, timeout=120
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data
