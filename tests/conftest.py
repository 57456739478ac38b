"""Shared fixtures: a real OpenSSH sshd on loopback and settings that trust it.

``sshd`` (session scope) is a started :class:`sshd_harness.SshdHarness`:
``host`` (127.0.0.1), ``port``, ``user``, ``client_key``, ``ssh_config``
(aliases ``testhost``, ``testhost2``, ``jumped``), ``known_hosts`` (OpenSSH
format, trusting the host key), ``log_path``, ``host_key_line()``,
``host_key_fingerprint()``, ``count_in_log()``.

``trusted_settings`` (function scope) is a :class:`Settings` with a fresh data
dir whose itop known_hosts trusts the sshd's key on 127.0.0.1 and 127.0.0.2,
the generated ssh config, the client key, and no agent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test modules import the harness as `sshd_harness`, whatever pytest's import
# mode (importlib mode does not put this directory on sys.path).
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from sshd_harness import SSHD, SshdHarness  # noqa: E402

from itop_tui.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdHarness]:
    """A running sshd for the whole test session (do not restart or stop it)."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server (the test command does this)")
    harness = SshdHarness(tmp_path_factory.mktemp("sshd"))
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def trusted_settings(tmp_path: Path, sshd: SshdHarness) -> Settings:
    """Settings with a fresh data dir that trusts the session sshd."""
    return sshd.itop_settings(tmp_path / "data")
