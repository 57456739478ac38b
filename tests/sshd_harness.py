"""A real OpenSSH sshd on loopback, for integration tests and benchmarks.

``SshdHarness(tmpdir)`` generates a host key, a client key authorized for
the current user and an ``sshd_config``, and runs ``/usr/sbin/sshd -D -e``
listening on 127.0.0.1 and 127.0.0.2 at one random port. Everything lives in
``tmpdir``; nothing outside it is touched except ``/run/sshd`` (sshd's
privilege separation directory), created when missing.

Usable without pytest::

    harness = SshdHarness(Path("/tmp/x"))
    harness.start()
    ...
    harness.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from itop_tui.settings import Settings

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
LISTEN_ADDRESSES = ("127.0.0.1", "127.0.0.2")
PRIVSEP_DIR = Path("/run/sshd")


class SshdError(RuntimeError):
    """sshd could not be started; the message includes its log."""


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def generate_key(path: Path, comment: str = "itop-test") -> Path:
    """Create an unencrypted ed25519 key pair at ``path`` (and ``path.pub``)."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path


class SshdHarness:
    """One OpenSSH sshd serving the current user on 127.0.0.1 and 127.0.0.2.

    Attributes after construction: ``host`` (127.0.0.1), ``port``, ``user``,
    ``client_key`` (private key path, authorized), ``host_key`` (private host
    key path), ``known_hosts`` (an OpenSSH known_hosts trusting the host key on
    both addresses, referenced by the generated ssh config), ``ssh_config``
    (an OpenSSH client config with the aliases ``testhost``, ``testhost2`` and
    ``jumped``, see :meth:`write_ssh_config`), ``log_path`` (sshd's log,
    LogLevel VERBOSE).
    """

    def __init__(self, tmpdir: Path, port: int | None = None) -> None:
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = LISTEN_ADDRESSES[0]
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.user = getpass.getuser()
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "client_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config_path = self.dir / "sshd_config"
        self.pid_path = self.dir / "sshd.pid"
        self.log_path = self.dir / "sshd.log"
        self.ssh_config = self.dir / "ssh_config"
        self.process: subprocess.Popen[bytes] | None = None
        generate_key(self.host_key, "itop-test-host")
        generate_key(self.client_key, "itop-test-client")
        self.authorized_keys.write_text(self.client_key.with_name("client_key.pub").read_text())
        self._write_known_hosts()
        self.write_ssh_config(self.ssh_config)

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until both addresses accept connections.

        When the randomly chosen port was taken in the meantime, another one
        is tried (the client files are rewritten for it).
        """
        if self.process is not None and self.process.poll() is None:
            return
        if not SSHD.exists():
            raise SshdError(f"{SSHD} is missing: install openssh-server")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        for _ in range(3):
            log_start = len(self.log_text())
            try:
                self._start_once(timeout)
                return
            except SshdError:
                busy = "Address already in use" in self.log_text()[log_start:]
                if self._fixed_port or not busy:
                    raise
            self.port = free_port()
            self._write_known_hosts()
            self.write_ssh_config(self.ssh_config)
        raise SshdError(f"no free port found for sshd:\n{self.log_text()}")

    def _start_once(self, timeout: float) -> None:
        self._write_config()
        log_start = len(self.log_text())
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        # sshd logs this once it listens: a connect test could reach another
        # process that holds the port.
        wanted = [f"Server listening on {a} port {self.port}." for a in LISTEN_ADDRESSES]
        while True:
            status = self.process.poll()
            if status is not None:
                self.process = None
                raise SshdError(f"sshd exited with status {status}:\n{self.log_text()}")
            if "Address already in use" in self.log_text()[log_start:]:
                self.stop()
                raise SshdError(f"sshd could not bind port {self.port}:\n{self.log_text()}")
            if all(w in self.log_text()[log_start:] for w in wanted):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise SshdError(f"sshd did not listen within {timeout}s:\n{self.log_text()}")
            time.sleep(0.02)
        for address in LISTEN_ADDRESSES:
            with socket.create_connection((address, self.port), timeout=2) as sock:
                sock.settimeout(2)
                if not sock.recv(64).startswith(b"SSH-"):
                    self.stop()
                    raise SshdError(f"{address}:{self.port} does not answer like sshd")

    def stop(self) -> None:
        """Stop sshd and every session process it started."""
        proc = self.process
        if proc is None:
            return
        self.process = None
        for child in self.session_processes(proc.pid):
            _signal(child, signal.SIGCONT)
            _signal(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart_with_new_host_key(self) -> None:
        """Stop, replace the host key with a fresh one, start on the same port."""
        self.stop()
        generate_key(self.host_key, "itop-test-host")
        self._write_known_hosts()
        self.start()

    @property
    def pid(self) -> int | None:
        """The pid of the listening sshd, None when stopped."""
        return self.process.pid if self.process is not None else None

    def session_processes(self, master_pid: int | None = None) -> list[int]:
        """Pids of every process below the listening sshd (sessions, commands)."""
        root = master_pid if master_pid is not None else self.pid
        if root is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found: list[int] = []
        stack = [root]
        while stack:
            for pid in children.get(stack.pop(), []):
                found.append(pid)
                stack.append(pid)
        return found

    def session_processes_running(self, text: str) -> set[int]:
        """Pids below this sshd whose command line contains ``text``.

        Only this harness's sessions count: other sshds on the machine (other
        test sessions, benchmarks) may run the same commands. A shell's
        subshells carry its command line for a moment after each fork, so a
        match whose parent also matches is the same command and not counted.
        """
        found = pids_running(text) & set(self.session_processes())
        return {pid for pid in found if parent_of(pid) not in found}

    def kill_session_of(self, pid: int) -> list[int]:
        """SIGKILL the sshd session processes between the listener and ``pid``.

        The client then sees its connection drop, as when a host dies; the
        command ``pid`` itself is left running, orphaned. Returns the killed
        pids (empty when ``pid`` is not served by this sshd any more).
        """
        killed = []
        parent = parent_of(pid)
        while parent is not None and parent not in (self.pid, 0, 1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(parent, signal.SIGKILL)
                killed.append(parent)
            parent = parent_of(parent)
        return killed

    # -- keys and client files -------------------------------------------

    def host_key_data(self) -> str:
        """The host public key as ``ssh-ed25519 AAAA...`` (no comment)."""
        fields = self.host_key.with_name(self.host_key.name + ".pub").read_text().split()
        return f"{fields[0]} {fields[1]}"

    def host_key_line(self, address: str | None = None) -> str:
        """A known_hosts line for ``[ADDRESS]:PORT`` (default 127.0.0.1)."""
        return f"[{address or self.host}]:{self.port} {self.host_key_data()}"

    def host_key_fingerprint(self) -> str:
        """The host key's ``SHA256:...`` fingerprint as ``ssh-keygen -lf`` prints it."""
        out = subprocess.run(
            [SSH_KEYGEN, "-lf", str(self.host_key.with_name(self.host_key.name + ".pub"))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]

    def write_ssh_config(
        self, path: Path, aliases: tuple[str, ...] = ("testhost", "testhost2", "jumped")
    ) -> Path:
        """Write an OpenSSH client config with the requested aliases.

        ``testhost``: 127.0.0.1 directly. ``jumped``: 127.0.0.2 through
        ``ProxyJump testhost``. ``testhost2``: 127.0.0.2 directly. All use the
        client key, IdentitiesOnly and the harness's known_hosts file.
        """
        blocks = {
            "testhost": (self.host, None),
            "testhost2": (LISTEN_ADDRESSES[1], None),
            "jumped": (LISTEN_ADDRESSES[1], "testhost"),
        }
        lines: list[str] = []
        for alias in aliases:
            if alias not in blocks:
                raise ValueError(f"unknown alias {alias!r}; known: {', '.join(blocks)}")
            address, jump = blocks[alias]
            lines += [
                f"Host {alias}",
                f"    HostName {address}",
                f"    Port {self.port}",
                f"    User {self.user}",
                f"    IdentityFile {self.client_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
            ]
            if jump:
                lines.append(f"    ProxyJump {jump}")
            lines.append("")
        path.write_text("\n".join(lines))
        return path

    def itop_settings(self, data_dir: Path, **ssh: Any) -> Settings:
        """itop settings trusting this sshd, with a data dir at ``data_dir``.

        itop's known_hosts (in ``data_dir``) trusts the host key on 127.0.0.1
        and 127.0.0.2; the ssh config is :attr:`ssh_config`, the identity is
        :attr:`client_key`, no user known_hosts, no agent. ``ssh`` overrides
        :class:`SSHSettings` fields (e.g. ``keepalive_interval=1``).
        """
        from itop_tui.settings import Settings, SSHSettings

        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "known_hosts").write_text(
            "".join(self.host_key_line(a) + "\n" for a in LISTEN_ADDRESSES)
        )
        options: dict[str, Any] = {
            "config_files": [self.ssh_config],
            "known_hosts_files": [],
            "identity_files": [self.client_key],
            "use_agent": False,
            "connect_timeout": 5.0,
        }
        options.update(ssh)
        return Settings(data_dir=data_dir, ssh=SSHSettings(**options))

    def log_text(self) -> str:
        """sshd's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count_in_log(self, text: str) -> int:
        """How many log lines contain ``text``."""
        return sum(1 for line in self.log_text().splitlines() if text in line)

    # -- internals -------------------------------------------------------

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text(
            "".join(self.host_key_line(a) + "\n" for a in LISTEN_ADDRESSES)
        )

    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            *(f"ListenAddress {a}" for a in LISTEN_ADDRESSES),
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_path}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "MaxAuthTries 6",
            "ClientAliveInterval 0",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        self.config_path.write_text("\n".join(lines) + "\n")


# -- processes ----------------------------------------------------------------
#
# Helpers for tests that find, kill or wait for the commands an sshd runs.
# They read /proc directly: ``pgrep`` is a process start per poll, which adds
# up on a loaded machine.


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces.
    return int(stat.rsplit(")", 1)[1].split()[1])


def pids_running(text: str) -> set[int]:
    """Pids of live processes whose command line contains ``text``.

    Zombies have no command line, so a command that ended but was not reaped
    yet does not count as running.
    """
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text in cmdline.replace(b"\0", b" ").decode(errors="replace"):
            found.add(int(entry.name))
    return found


def still_running(pids: Iterable[int], text: str) -> set[int]:
    """Those of ``pids`` that still run a command line containing ``text``."""
    return set(pids) & pids_running(text)


async def wait_until_gone(pids: Iterable[int], text: str, timeout: float = 30.0) -> set[int]:
    """Wait for ``pids`` (running ``text``) to end; those left after ``timeout``.

    The deadline is generous: it only matters when something is wrong, and a
    loaded machine can take seconds to schedule a dying process.
    """
    wanted = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = still_running(wanted, text)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)


async def wait_for_processes(
    harness: SshdHarness, text: str, exclude: Iterable[int] = (), timeout: float = 30.0
) -> set[int]:
    """Wait until ``harness`` runs a command containing ``text`` (not in ``exclude``).

    Returns the new pids, empty if none appeared within ``timeout``.
    """
    skip = set(exclude)
    deadline = time.monotonic() + timeout
    while True:
        found = harness.session_processes_running(text) - skip
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


if __name__ == "__main__":  # pragma: no cover - manual smoke run
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        harness = SshdHarness(Path(tmp))
        harness.start()
        print(f"sshd listening on {harness.host}:{harness.port} (pid {harness.pid})")
        harness.stop()
        sys.exit(0)
