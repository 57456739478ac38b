"""Where the files shipped with itop are: example config and the procedure library.

In the repository they live in the top-level ``config/``; in a wheel they are
the package ``itop_tui.bundled_config`` (see ``pyproject.toml``).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def config_dir() -> Path:
    """The directory holding ``itop.example.yaml`` and ``procedures/``."""
    spec = find_spec("itop_tui.bundled_config")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    # A source checkout or an editable install: the repository's config/.
    return Path(__file__).resolve().parent.parent / "config"


def procedures_dir() -> Path:
    """The built-in procedure library."""
    return config_dir() / "procedures"
