"""Trees of test files for the backup tests, and a way to compare two trees.

Lives beside ``conftest.py`` so every test directory can import it.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tree(root: Path, seed: int = 1) -> None:
    """Random files: binary, unicode and odd names, empty files, symlinks, modes, a hard link."""
    rng = random.Random(seed)
    (root / "deep" / "er" / "est").mkdir(parents=True)
    (root / "ünïcödé ✓ dir").mkdir()
    for i in range(25):
        size = rng.choice([0, 1, 100, 4096, 65537, 300_000])
        folder = rng.choice([root, root / "deep", root / "deep" / "er" / "est",
                             root / "ünïcödé ✓ dir"])
        (folder / f"file-{i:02d}.bin").write_bytes(rng.randbytes(size))
    (root / "empty").write_bytes(b"")
    (root / "spaces and 'quotes' $HOME.txt").write_text("shell metacharacters in a name\n")
    (root / "日本語のファイル.txt").write_text("unicode content ✓\n")
    (root / "-starts-with-dash").write_text("dash\n")
    (root / "text.txt").write_text("hello\n" * 1000)
    os.symlink("text.txt", root / "relative-link")
    os.symlink("/etc/hostname", root / "absolute-link")
    os.symlink("does-not-exist", root / "dangling-link")
    os.link(root / "text.txt", root / "hard-link")
    (root / "secret").write_bytes(rng.randbytes(64))
    os.chmod(root / "secret", 0o600)
    os.chmod(root / "text.txt", 0o644)
    os.chmod(root / "deep" / "er", 0o750)
    (root / "script.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o755)
    (root / "readonly").write_text("r\n")
    os.chmod(root / "readonly", 0o444)


def snapshot_tree(root: Path) -> dict[str, tuple[str, str, str]]:
    """Relative path -> (type, mode, sha256 or link target) for everything below root."""
    found: dict[str, tuple[str, str, str]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            mode = f"{stat.S_IMODE(info.st_mode):04o}"
            relative = path.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                found[relative] = ("symlink", "", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[relative] = ("dir", mode, "")
            else:
                found[relative] = ("file", mode, sha256(path))
    return found
