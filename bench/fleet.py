"""A fleet of N SSH hosts on loopback, served by one real OpenSSH sshd.

:func:`open_fleet` starts one sshd (from ``tests/sshd_harness.py``, with
MaxStartups and MaxSessions raised for hundreds of connections) and writes
everything a client needs to reach ``N`` distinct hosts:

* an OpenSSH client config with the aliases ``h0001`` .. ``hNNNN``, each a
  ``Host`` block of its own (HostName 127.0.0.1, the port, the user, the
  client key, the known_hosts file, strict host keys);
* an OpenSSH ``known_hosts`` trusting the sshd's host key;
* an itop config (``itop.yaml``) and data dir whose inventory holds exactly
  those N hosts (group ``bench``), with itop's own known_hosts trusting the key;
* an Ansible INI inventory of the same aliases.

Each alias is its own inventory host, so itop, asyncssh and Ansible all open
one connection per alias even though every alias reaches the same sshd
(itop's pool keys connections by inventory host; Ansible's ControlPath hashes
the alias).

The remote user is a dedicated account with ``/bin/sh`` as its login shell
(created once with ``useradd`` when running as root): root's bash would
source ``~/.bashrc`` for every SSH command, and a ``pyenv init`` there costs
far more than the command being measured.

OpenSSH forks per connection (a privileged monitor and a session process),
so 500 connections are about 1,000 sshd processes plus the commands; the
fleet checks the open-file limit before starting.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from itop_tui.domain.models import Group, Host
from itop_tui.services.context import Services
from itop_tui.settings import Settings, load_settings
from tests.sshd_harness import LISTEN_ADDRESSES, SshdHarness

BENCH_USER = "itopbench"
BENCH_SHELL = "/bin/sh"
BENCH_GROUP = "bench"
# Far above what the benchmarks open at once; sshd drops connections past
# the first number of MaxStartups while they are unauthenticated.
MAX_STARTUPS = "2000"
# One connection per alias, few channels each (a fan-out command, or the
# collection stream plus an on-demand command).
MAX_SESSIONS = "16"
# File descriptors the client needs per connection (a socket), plus slack.
SSH_CONFIG_STYLES = ("per-host", "pattern")
FDS_PER_HOST = 2
FD_SLACK = 256


class FleetError(RuntimeError):
    """The fleet could not be set up; the message says what to change."""


def alias(index: int) -> str:
    """The alias of host number ``index`` (1-based): ``h0001``."""
    return f"h{index:04d}"


class BenchSshd(SshdHarness):
    """The test harness's sshd with limits raised for a fleet, serving ``user``."""

    def __init__(self, tmpdir: Path, user: str) -> None:
        super().__init__(tmpdir)
        self.user = user

    def _write_config(self) -> None:
        super()._write_config()
        replaced = {
            "MaxStartups": f"MaxStartups {MAX_STARTUPS}",
            "MaxSessions": f"MaxSessions {MAX_SESSIONS}",
            # VERBOSE logs every key offered; at hundreds of connections
            # that is sshd CPU the client measurements would share a box with.
            "LogLevel": "LogLevel INFO",
        }
        lines = []
        for line in self.config_path.read_text().splitlines():
            keyword = line.split(" ", 1)[0]
            lines.append(replaced.get(keyword, line))
        self.config_path.write_text("\n".join(lines) + "\n")


def ensure_user(name: str) -> str:
    """Make sure login ``name`` exists with a plain ``/bin/sh``; return its shell.

    Creates the account (no home directory, home ``/``) when it is missing
    and this process is root. ``name`` equal to the current login is used
    as it is, whatever its shell.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise FleetError(
                f"user {name!r} does not exist and only root can create it; "
                f"run as root or pass --user {getpass.getuser()}"
            ) from None
        useradd = shutil.which("useradd")
        if useradd is None:
            raise FleetError(f"user {name!r} does not exist and useradd is missing") from None
        subprocess.run(
            # Password "*": no password login, but not "locked" (sshd
            # without PAM refuses key logins to a "!" account).
            [useradd, "--system", "--no-create-home", "--home-dir", "/", "--password", "*",
             "--shell", BENCH_SHELL, "--comment", "itop benchmarks", name],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(name)
    return entry.pw_shell


def default_user() -> str:
    """The dedicated benchmark user when running as root, else the current login."""
    return BENCH_USER if os.geteuid() == 0 else getpass.getuser()


def raise_fd_limit(hosts: int) -> int:
    """Raise the soft open-file limit to what ``hosts`` connections need; return it."""
    need = hosts * FDS_PER_HOST + FD_SLACK
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FleetError(f"{hosts} hosts need {need} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


@dataclass
class Fleet:
    """A running fleet: the sshd and the client files for its ``hosts`` aliases."""

    dir: Path
    sshd: BenchSshd
    hosts: list[str]
    ssh_config: Path
    known_hosts: Path
    data_dir: Path
    config_path: Path
    ansible_inventory: Path
    shell: str
    ssh_config_style: str

    @property
    def user(self) -> str:
        """The remote login every alias uses."""
        return self.sshd.user

    @property
    def port(self) -> int:
        """The sshd's port (the same on every address)."""
        return self.sshd.port

    @property
    def address(self) -> str:
        """The address every alias connects to."""
        return LISTEN_ADDRESSES[0]

    @property
    def client_key(self) -> Path:
        """The private key the sshd authorizes."""
        return self.sshd.client_key

    def settings(self) -> Settings:
        """itop's settings for this fleet, read from its ``itop.yaml``."""
        return load_settings(self.config_path, self.data_dir)

    def itop_env(self) -> dict[str, str]:
        """The environment for an ``itop`` subprocess that uses this fleet."""
        env = dict(os.environ)
        env["ITOP_CONFIG"] = str(self.config_path)
        env["ITOP_DATA_DIR"] = str(self.data_dir)
        return env

    def sshd_processes(self) -> int:
        """How many processes run below the listening sshd right now."""
        return len(self.sshd.session_processes())

    def describe(self) -> dict[str, object]:
        """What the fleet is, for the results JSON."""
        return {
            "hosts": len(self.hosts),
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "shell": self.shell,
            "ssh_config_style": self.ssh_config_style,
            "sshd_max_startups": MAX_STARTUPS,
            "sshd_max_sessions": MAX_SESSIONS,
        }


def _write_ssh_config(sshd: BenchSshd, names: list[str], path: Path, style: str) -> None:
    # "per-host": one block per alias, as generated fleet configs are;
    # "pattern": one "Host h*" block for all of them.
    patterns = names if style == "per-host" else ["h*"]
    lines: list[str] = []
    for name in patterns:
        lines += [
            f"Host {name}",
            f"    HostName {LISTEN_ADDRESSES[0]}",
            f"    Port {sshd.port}",
            f"    User {sshd.user}",
            f"    IdentityFile {sshd.client_key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {sshd.known_hosts}",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "",
        ]
    path.write_text("\n".join(lines))


def _write_itop_config(
    fleet_dir: Path, sshd: BenchSshd, ssh_config: Path, data_dir: Path,
    metrics_interval: float | None,
) -> Path:
    # itop's defaults everywhere else (handshakes 10, forks 50, retries 3):
    # the benchmarks measure itop as it ships.
    path = fleet_dir / "itop.yaml"
    metrics = ["metrics:", f"  interval: {metrics_interval:g}"] if metrics_interval else []
    path.write_text(
        "\n".join([
            f"data_dir: {data_dir}",
            "ssh:",
            "  host_key_policy: strict",
            "  config_files:",
            f"    - {ssh_config}",
            "  known_hosts_files:",
            f"    - {sshd.known_hosts}",
            "  identity_files: []",
            "  use_agent: false",
            *metrics,
            "",
        ])
    )
    return path


def _write_inventory(settings: Settings, names: list[str]) -> None:
    services = Services.open(settings, origin="cli")
    # A fresh data dir is seeded with this machine: the fleet holds only its aliases.
    for name in list(services.inventory.load().hosts):
        services.inventory.remove_host(name)
    services.inventory.upsert_groups([Group(BENCH_GROUP)])
    services.inventory.upsert_hosts([
        Host(name=name, ssh_alias=name, groups=[BENCH_GROUP], source="ssh-config")
        for name in names
    ])


def _write_ansible_inventory(names: list[str], path: Path) -> None:
    path.write_text("[bench]\n" + "".join(f"{name}\n" for name in names))


@contextlib.contextmanager
def open_fleet(
    hosts: int, *, user: str | None = None, base_dir: Path | None = None,
    ssh_config_style: str = "per-host", metrics_interval: float | None = None,
) -> Iterator[Fleet]:
    """Start a fleet of ``hosts`` aliases; stop the sshd and remove the files on exit.

    ``ssh_config_style`` is ``per-host`` (a ``Host`` block per alias) or
    ``pattern`` (one ``Host h*`` block). ``metrics_interval`` sets the
    config's ``metrics.interval`` (itop's default when None).
    """
    if hosts < 1:
        raise FleetError(f"--hosts must be at least 1, got {hosts}")
    if ssh_config_style not in SSH_CONFIG_STYLES:
        raise FleetError(f"ssh config style must be one of {', '.join(SSH_CONFIG_STYLES)}")
    raise_fd_limit(hosts)
    login = user or default_user()
    shell = ensure_user(login)
    fleet_dir = Path(tempfile.mkdtemp(prefix="itop-bench-", dir=base_dir))
    try:
        # sshd reads authorized_keys as the remote user, who must reach it.
        fleet_dir.chmod(0o711)
        sshd = BenchSshd(fleet_dir / "sshd", login)
        (fleet_dir / "sshd").chmod(0o711)
        sshd.authorized_keys.chmod(0o644)
        sshd.start()
        try:
            names = [alias(i) for i in range(1, hosts + 1)]
            ssh_config = fleet_dir / "ssh_config"
            _write_ssh_config(sshd, names, ssh_config, ssh_config_style)
            data_dir = fleet_dir / "data"
            sshd.itop_settings(data_dir)  # writes itop's known_hosts trusting the sshd
            config_path = _write_itop_config(fleet_dir, sshd, ssh_config, data_dir, metrics_interval)
            _write_inventory(load_settings(config_path, data_dir), names)
            inventory = fleet_dir / "ansible_hosts.ini"
            _write_ansible_inventory(names, inventory)
            yield Fleet(
                dir=fleet_dir,
                sshd=sshd,
                hosts=names,
                ssh_config=ssh_config,
                known_hosts=sshd.known_hosts,
                data_dir=data_dir,
                config_path=config_path,
                ansible_inventory=inventory,
                shell=shell,
                ssh_config_style=ssh_config_style,
            )
        finally:
            sshd.stop()
    finally:
        shutil.rmtree(fleet_dir, ignore_errors=True)


def main() -> int:
    """Start a small fleet, run one command over it with OpenSSH, and stop."""
    import argparse

    parser = argparse.ArgumentParser(description="start a loopback fleet and check it answers")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--user", default=None, help=f"remote login (default: {BENCH_USER} as root)")
    args = parser.parse_args()
    with open_fleet(args.hosts, user=args.user) as fleet:
        for name in fleet.hosts:
            out = subprocess.run(
                ["ssh", "-F", str(fleet.ssh_config), name, "echo $0 $(id -un)"],
                capture_output=True, text=True, timeout=30,
            )
            print(name, out.returncode, out.stdout.strip(), out.stderr.strip())
        print(fleet.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
