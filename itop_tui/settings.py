"""YAML configuration validated into typed settings.

The loader (``load_settings``) is added by the settings work; the
dataclasses below are the contract the rest of the code relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SSHSettings:
    """How itop connects to hosts over SSH (ARCHITECTURE.md section 6)."""

    host_key_policy: str = "strict"  # strict | accept-new
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    max_concurrent_handshakes: int = 10
    connect_retries: int = 3
    config_files: list[Path] = field(default_factory=lambda: [Path("~/.ssh/config").expanduser()])
    known_hosts_files: list[Path] = field(
        default_factory=lambda: [Path("~/.ssh/known_hosts").expanduser()]
    )
    identity_files: list[Path] = field(default_factory=list)
    use_agent: bool = True


@dataclass
class Settings:
    """Everything itop is configured with."""

    data_dir: Path
    config_path: Path | None = None
    ssh: SSHSettings = field(default_factory=SSHSettings)
    forks: int = 50
    command_timeout: float = 60.0
    output_limit: int = 64 * 1024
    roles: dict[str, str] = field(default_factory=dict)
    default_role: str = "operator"
    theme: str = "textual-dark"
    inventory_sources: list[Path] = field(default_factory=list)

    @property
    def known_hosts_path(self) -> Path:
        """itop's own known_hosts, where keys trusted through itop are stored."""
        return self.data_dir / "known_hosts"
