"""StoreWatch on real store files, written by this process and by another one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from itop_tui.services.store import JsonStore
from itop_tui.services.store_watch import StoreWatch, file_signature

WRITE_ONE = """
import sys
from itop_tui.services.store import JsonStore
with JsonStore(sys.argv[1]).write() as db:
    db.table("things").insert({"n": int(sys.argv[2])})
"""


def write_elsewhere(path: Path, n: int) -> None:
    """One write by another OS process, as a second itop would do."""
    subprocess.run([sys.executable, "-c", WRITE_ONE, str(path), str(n)], check=True, timeout=60)


def test_a_write_by_another_process_is_noticed_once(tmp_path: Path) -> None:
    path = tmp_path / "things.json"
    with JsonStore(path).write() as db:
        db.table("things").insert({"n": 0})
    watch = StoreWatch([path])
    assert watch.poll() is False
    write_elsewhere(path, 1)
    assert watch.poll() is True
    assert watch.poll() is False  # seen now


def test_mark_takes_the_current_version_as_read(tmp_path: Path) -> None:
    path = tmp_path / "things.json"
    watch = StoreWatch.in_data_dir(tmp_path, "things.json", "other.json")
    write_elsewhere(path, 1)
    watch.mark()  # the pane read it itself
    assert watch.poll() is False
    write_elsewhere(tmp_path / "other.json", 2)
    assert watch.poll() is True


def test_a_file_that_appears_or_goes_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "things.json"
    assert file_signature(path) is None
    watch = StoreWatch([path])
    write_elsewhere(path, 1)
    assert file_signature(path) is not None
    assert watch.poll() is True
    path.unlink()
    assert watch.poll() is True
    assert watch.poll() is False


def test_a_rewrite_with_the_same_content_is_seen(tmp_path: Path) -> None:
    # Another itop saving the same record again still moved the file on.
    path = tmp_path / "things.json"
    write_elsewhere(path, 1)
    content = path.read_bytes()
    watch = StoreWatch([path])
    with JsonStore(path).write() as db:
        db.table("things").truncate()
        db.table("things").insert({"n": 1})
    assert path.read_bytes() == content
    assert watch.poll() is True
