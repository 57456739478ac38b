"""Fixtures for the UI tests (helpers live in ``ui_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_fixtures import fleet, fleet_groups, open_services

from itop_tui.services.context import Services


@pytest.fixture
def fleet_services(tmp_path: Path) -> Services:
    """Services over :func:`fleet`."""
    return open_services(tmp_path / "data", fleet(), fleet_groups())
