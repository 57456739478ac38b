"""SSHTransport and TransportPool against a real OpenSSH sshd on loopback.

Tests that break the server (new host key, SIGSTOP) start their own sshd so
the session one stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from sshd_harness import SSHD, SshdHarness, free_port, generate_key

from itop_tui.domain.models import Host
from itop_tui.services.known_hosts import KnownHosts
from itop_tui.services.local_transport import LocalTransport
from itop_tui.services.ssh_transport import SSHTransport
from itop_tui.services.transport import ConnectFailed, HostKeyChanged, HostKeyUnknown
from itop_tui.services.transport_pool import ConnectSpec, TransportPool
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

TESTHOST = Host(name="testhost", ssh_alias="testhost")
JUMPED = Host(name="behind-jump", ssh_alias="jumped")


def direct_host(harness: SshdHarness, name: str = "direct") -> Host:
    """The sshd as an inventory host with no ssh config alias."""
    return Host(name=name, address=harness.host, port=harness.port, user=harness.user)


@pytest.fixture
async def pool(trusted_settings: Settings) -> AsyncIterator[TransportPool]:
    transport_pool = TransportPool(trusted_settings)
    yield transport_pool
    await transport_pool.close()


@pytest.fixture
def private_sshd(tmp_path: Path) -> Iterator[SshdHarness]:
    """An sshd of this test's own, for tests that restart or freeze it."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server (the test command does this)")
    harness = SshdHarness(tmp_path / "private_sshd")
    harness.start()
    yield harness
    harness.stop()


async def settle_count(harness: SshdHarness, text: str) -> int:
    """The count of ``text`` in sshd's log once it stopped growing."""
    count = -1
    for _ in range(40):
        await asyncio.sleep(0.05)
        now = harness.count_in_log(text)
        if now == count:
            return now
        count = now
    return count


def kill_from_pidfile(pidfile: Path) -> None:
    """Kill a remote command the test left behind (its sshd session is gone)."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- run ---------------------------------------------------------------------


async def test_run_reports_status_output_and_duration(pool: TransportPool) -> None:
    transport = pool.for_host(TESTHOST)
    assert isinstance(transport, SSHTransport)
    result = await transport.run("echo out; echo err >&2; sleep 0.2; exit 7")
    assert result.host == "testhost"
    assert (result.exit_status, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert result.error is None and not result.ok and not result.truncated
    assert 0.2 <= result.duration < 5


async def test_for_host_gives_local_transport_for_address_local(pool: TransportPool) -> None:
    transport = pool.for_host(Host(name="here", address="local"))
    assert isinstance(transport, LocalTransport)
    # The shell is a child of this process, not of an sshd.
    assert (await transport.run("echo $PPID")).stdout == f"{os.getpid()}\n"
    assert pool.stats.attempts == 0


async def test_stdin_and_signal_death(pool: TransportPool) -> None:
    transport = pool.for_host(TESTHOST)
    result = await transport.run("tr a-z A-Z", stdin=b"hello\n")
    assert result.ok and result.stdout == "HELLO\n"
    result = await transport.run("kill -KILL $$")
    assert result.exit_status == 137


async def test_concurrent_runs_share_one_connection(pool: TransportPool, sshd: SshdHarness) -> None:
    accepted = await settle_count(sshd, "Accepted publickey")
    transport = pool.for_host(TESTHOST)
    results = await asyncio.gather(*(transport.run(f"echo {i}") for i in range(50)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(50)]
    assert all(r.ok for r in results)
    assert (pool.stats.attempts, pool.stats.connects, pool.open_connections) == (1, 1, 1)
    assert await settle_count(sshd, "Accepted publickey") == accepted + 1
    # A second transport object for the same host reuses the connection.
    assert (await pool.for_host(TESTHOST).run("true")).ok
    assert pool.stats.connects == 1


async def test_output_over_the_bound_is_cut_and_flagged(pool: TransportPool) -> None:
    result = await pool.for_host(TESTHOST).run(
        "head -c 3000000 /dev/zero | tr '\\0' x; echo tail >&2", limit=1000
    )
    assert result.ok
    assert result.stdout == "x" * 1000
    assert result.truncated
    assert result.stderr == "tail\n"


async def test_control_sequences_are_stripped(pool: TransportPool) -> None:
    result = await pool.for_host(TESTHOST).run(
        r"printf '\033[2J\033]0;title\007ok\r\n\033[31mred\033[0m\n'"
    )
    assert result.stdout == "ok\nred\n"


async def test_timeout_reports_and_the_closed_channel_ends_the_command(
    pool: TransportPool, tmp_path: Path
) -> None:
    transport = pool.for_host(TESTHOST)
    # Connected first, so the time-out covers the command alone.
    assert (await transport.run("true")).ok
    # Output that arrived before the time-out is kept. On a loaded machine
    # the command may not have printed within a short time-out, so longer
    # ones are tried until it did: a product that drops what it collected
    # fails every attempt.
    for timeout in (1, 2, 4, 8, 16):
        pidfile = tmp_path / f"pid-{timeout}"
        started = time.monotonic()
        result = await transport.run(
            f"echo $$ > {pidfile}; while :; do echo tick; sleep 0.1; done", timeout=timeout
        )
        elapsed = time.monotonic() - started
        assert result.exit_status is None and result.error == f"timed out after {timeout}s"
        # Not ended before its time; and ended soon after it (the bound is
        # for a loaded machine: an ignored time-out would run forever).
        assert timeout - 0.01 <= elapsed < timeout + 10
        assert result.stdout == "tick\n" * result.stdout.count("tick\n")
        # The channel is closed: the loop's next write fails and it ends. (A
        # silent command is ended by the TERM signal request, which sshd refuses
        # for root sessions without post-auth privilege separation, as here.)
        if result.stdout:
            pid = int(pidfile.read_text())  # written before the first tick
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not pid_alive(pid)
            break
        # Nothing printed yet: the command may still be starting; it ends at
        # its first write, or is killed here if it somehow does not.
        await asyncio.sleep(1)
        kill_from_pidfile(pidfile)
    assert result.stdout.startswith("tick\n"), "no output kept, even with a 16 s time-out"
    # The connection is still good for the next command.
    assert (await transport.run("echo again")).stdout == "again\n"
    assert pool.stats.connects == 1


# -- stream ------------------------------------------------------------------


async def test_stream_yields_lines_and_closing_ends_the_remote_command(
    pool: TransportPool, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    stream = pool.for_host(TESTHOST).stream(
        f"echo $$ > {pidfile}; i=0; while :; do echo line$i; i=$((i+1)); sleep 0.02; done"
    )
    lines = []
    async for line in stream:
        lines.append(line)
        if len(lines) == 5:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert lines == [f"line{i}" for i in range(5)]
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pid_alive(pid)


async def test_stream_ends_with_the_command(pool: TransportPool) -> None:
    transport = pool.for_host(TESTHOST)
    lines = [line async for line in transport.stream(r"printf 'a\n\033[1mb\033[0m\n\nc'")]
    assert lines == ["a", "b", "", "c"]
    long = [line async for line in transport.stream("printf '%05000d\\nok\\n' 1", line_limit=100)]
    assert long == ["0" * 100, "ok"]


async def test_stream_with_a_slow_consumer_loses_nothing(pool: TransportPool) -> None:
    # Far more lines than the stream buffers before pausing the channel.
    received = []
    async for line in pool.for_host(TESTHOST).stream("seq 1 20000"):
        received.append(line)
        if len(received) % 2000 == 0:
            await asyncio.sleep(0.05)
    assert received == [str(i) for i in range(1, 20001)]


async def test_stream_chunks_yields_whole_clean_lines_and_closing_ends_the_command(
    pool: TransportPool, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    stream = pool.for_host(TESTHOST).stream_chunks(
        f"echo $$ > {pidfile}; i=0; while :; do printf 'li\\033[1mne%d\\n' $i; "
        f"i=$((i+1)); sleep 0.02; done"
    )
    text = ""
    async for block in stream:
        assert block.endswith("\n")  # whole lines only
        text += block
        if text.count("\n") >= 5:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert text.splitlines()[:5] == [f"line{i}" for i in range(5)]
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not pid_alive(pid)


async def test_stream_chunks_with_a_slow_consumer_loses_nothing(pool: TransportPool) -> None:
    blocks = []
    async for block in pool.for_host(TESTHOST).stream_chunks("seq 1 200000; printf end"):
        blocks.append(block)
        if len(blocks) % 20 == 0:
            await asyncio.sleep(0.05)
    assert "".join(blocks) == "".join(f"{i}\n" for i in range(1, 200001)) + "end"


# -- host keys ---------------------------------------------------------------


async def test_unknown_host_key_raises_with_ssh_keygen_fingerprint(
    trusted_settings: Settings, sshd: SshdHarness
) -> None:
    trusted_settings.known_hosts_path.write_text("")
    pool = TransportPool(trusted_settings)
    try:
        with pytest.raises(HostKeyUnknown) as info:
            await pool.for_host(TESTHOST).run("true")
        error = info.value
        assert error.fingerprint == sshd.host_key_fingerprint()
        assert error.key_data == sshd.host_key_data()
        assert (error.host, error.port) == ("testhost", sshd.port)
        assert error.fingerprint in str(error) and "itop trust testhost" in str(error)
        assert trusted_settings.known_hosts_path.read_text() == ""
        assert pool.stats.attempts == 1  # never retried

        fetched = await pool.fetch_host_key(TESTHOST)
        fingerprint, key_data = fetched
        assert (fingerprint, key_data) == (sshd.host_key_fingerprint(), sshd.host_key_data())
        assert (fetched.host, fetched.port) == ("127.0.0.1", sshd.port)

        # The user says yes: the key is stored in itop's file and used.
        assert pool.trust_unknown(error) is True
        assert trusted_settings.known_hosts_path.read_text() == sshd.host_key_line() + "\n"
        assert (await pool.for_host(TESTHOST).run("echo trusted")).stdout == "trusted\n"
    finally:
        await pool.close()


async def test_accept_new_stores_the_key_in_itops_file_only(
    trusted_settings: Settings, sshd: SshdHarness, tmp_path: Path
) -> None:
    trusted_settings.known_hosts_path.unlink()
    user_known_hosts = tmp_path / "user_known_hosts"
    user_known_hosts.write_text("# the user's file\n")
    trusted_settings.ssh.known_hosts_files = [user_known_hosts]
    trusted_settings.ssh.host_key_policy = "accept-new"
    pool = TransportPool(trusted_settings)
    try:
        assert (await pool.for_host(TESTHOST).run("echo hi")).ok
    finally:
        await pool.close()
    assert trusted_settings.known_hosts_path.read_text() == sshd.host_key_line() + "\n"
    assert user_known_hosts.read_text() == "# the user's file\n"
    stored = KnownHosts(trusted_settings.known_hosts_path, [])
    assert stored.check("127.0.0.1", sshd.port, sshd.host_key_data()) == "known"


async def test_changed_host_key_is_refused_with_both_fingerprints(
    private_sshd: SshdHarness, tmp_path: Path
) -> None:
    settings = private_sshd.itop_settings(tmp_path / "data", connect_retries=0)
    old = private_sshd.host_key_fingerprint()
    private_sshd.restart_with_new_host_key()
    new = private_sshd.host_key_fingerprint()
    assert old != new
    for policy in ("strict", "accept-new"):
        settings.ssh.host_key_policy = policy
        pool = TransportPool(settings)
        try:
            with pytest.raises(HostKeyChanged) as info:
                await pool.for_host(direct_host(private_sshd)).run("true")
        finally:
            await pool.close()
        assert (info.value.known, info.value.offered) == (old, new)
        assert old in str(info.value) and new in str(info.value)
    # accept-new did not replace the old key.
    assert settings.known_hosts_path.read_text().count("ssh-ed25519") == 2


# -- connection failures -----------------------------------------------------


async def test_refused_auth_fails_fast_without_retry(
    trusted_settings: Settings, sshd: SshdHarness, tmp_path: Path
) -> None:
    wrong_key = generate_key(tmp_path / "wrong_key")
    trusted_settings.ssh.identity_files = [wrong_key]
    trusted_settings.ssh.config_files = []
    trusted_settings.ssh.connect_retries = 3
    pool = TransportPool(trusted_settings)
    before = await settle_count(sshd, "Connection from")
    try:
        started = time.monotonic()
        result = await pool.for_host(direct_host(sshd)).run("true")
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    assert result.exit_status is None and not result.ok
    assert result.error is not None and "authentication refused" in result.error
    assert str(wrong_key) in result.error
    assert elapsed < 3
    assert pool.stats.attempts == 1
    assert await settle_count(sshd, "Connection from") == before + 1


async def test_closed_port_gives_connect_failure_after_retries(
    trusted_settings: Settings,
) -> None:
    trusted_settings.ssh.connect_retries = 2
    pool = TransportPool(trusted_settings)
    closed = Host(name="closed", address="127.0.0.1", port=free_port())
    try:
        result = await pool.for_host(closed).run("true")
    finally:
        await pool.close()
    assert result.exit_status is None
    assert result.error == (
        f"closed: cannot connect to {getpass.getuser()}@127.0.0.1:{closed.port}:"
        " connection refused (after 3 attempts)"
    )
    assert pool.stats.attempts == 3


async def test_stopped_host_is_detected_by_keepalive_and_reconnected(
    private_sshd: SshdHarness, tmp_path: Path
) -> None:
    settings = private_sshd.itop_settings(
        tmp_path / "data", keepalive_interval=1.0, keepalive_count_max=2
    )
    pool = TransportPool(settings)
    host = direct_host(private_sshd)
    transport = pool.for_host(host)
    pidfile = tmp_path / "pid"
    stopped: list[int] = []
    try:
        assert (await transport.run("true")).ok
        pooled = await pool.connection(ConnectSpec.for_host(host))
        local_port = pooled.conn.get_extra_info("sockname")[1]
        task = asyncio.ensure_future(
            transport.run(f"echo $$ > {pidfile}; exec sleep 30", timeout=20)
        )
        deadline = time.monotonic() + 5
        while not pidfile.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # The sshd processes serving this connection: they hold its socket.
        for pid in serving_processes(private_sshd, local_port):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        assert stopped, "no sshd process found for the connection"
        frozen_at = time.monotonic()
        result = await task
        detected_after = time.monotonic() - frozen_at
        assert result.exit_status is None
        assert result.error is not None and result.error.startswith("connection lost")
        assert "keepalive" in result.error
        # interval 1 s x count 2: lost after about 3 s, far before the 20 s timeout.
        assert detected_after < 5
        assert pool.open_connections == 0
        # The next call opens a new connection.
        again = await transport.run("echo back")
        assert again.ok and again.stdout == "back\n"
        assert pool.stats.connects == 2
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        await pool.close()
        kill_from_pidfile(pidfile)


def serving_processes(harness: SshdHarness, local_port: int) -> list[int]:
    """Pids of the sshd processes holding the connection from ``local_port``."""
    found = []
    for pid in harness.session_processes():
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == local_port for c in conns):
            found.append(pid)
    return found


async def test_connection_dropped_mid_stream_and_mid_run(
    private_sshd: SshdHarness, tmp_path: Path
) -> None:
    pool = TransportPool(private_sshd.itop_settings(tmp_path / "data"))
    host = direct_host(private_sshd)
    transport = pool.for_host(host)
    pidfile = tmp_path / "pid"
    try:
        pooled = await pool.connection(ConnectSpec.for_host(host))
        local_port = pooled.conn.get_extra_info("sockname")[1]
        running = asyncio.ensure_future(
            transport.run(f"echo started; echo $$ > {pidfile}; exec sleep 30")
        )
        deadline = time.monotonic() + 5
        while not pidfile.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stream = transport.stream("while :; do echo tick; sleep 0.05; done")
        lines = []
        with pytest.raises(ConnectFailed, match="connection lost while streaming"):
            async for line in stream:
                lines.append(line)
                if len(lines) == 3:
                    for pid in serving_processes(private_sshd, local_port):
                        os.kill(pid, signal.SIGKILL)
        assert lines[:3] == ["tick"] * 3
        result = await asyncio.wait_for(running, 5)
        assert result.exit_status is None
        assert result.error is not None and result.error.startswith("connection lost")
        assert result.stdout == "started\n"
        assert pool.open_connections == 0
        assert (await transport.run("echo back")).stdout == "back\n"
    finally:
        await pool.close()
        kill_from_pidfile(pidfile)


async def test_handshakes_are_bounded_and_each_host_has_its_connection(
    trusted_settings: Settings, sshd: SshdHarness
) -> None:
    trusted_settings.ssh.max_concurrent_handshakes = 3
    pool = TransportPool(trusted_settings)
    hosts = [direct_host(sshd, f"h{i:02d}") for i in range(12)]
    try:
        results = await asyncio.gather(*(pool.for_host(h).run("echo ok") for h in hosts))
        assert [r.stdout for r in results] == ["ok\n"] * 12
        assert (pool.stats.connects, pool.open_connections) == (12, 12)
        assert pool.stats.max_handshakes_in_flight == 3
        assert pool.stats.handshakes_in_flight == 0
    finally:
        await pool.close()
    assert pool.open_connections == 0


async def test_keys_config_and_known_hosts_are_read_once(
    trusted_settings: Settings, sshd: SshdHarness, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config_copy"
    key = tmp_path / "key_copy"
    config.write_text(sshd.ssh_config.read_text().replace(str(sshd.client_key), str(key)))
    key.write_bytes(sshd.client_key.read_bytes())
    trusted_settings.ssh.config_files = [config]
    trusted_settings.ssh.identity_files = []
    pool = TransportPool(trusted_settings)
    try:
        assert (await pool.for_host(TESTHOST).run("true")).ok
        # Everything those files said is kept: a reconnect needs none of them.
        config.unlink()
        key.unlink()
        trusted_settings.known_hosts_path.unlink()
        pool.discard(await pool.connection(ConnectSpec.for_host(TESTHOST)))
        result = await pool.for_host(TESTHOST).run("echo again")
        assert result.stdout == "again\n", result.error
        assert pool.stats.connects == 2
    finally:
        await pool.close()


@pytest.fixture
def agent_socket(tmp_path: Path, sshd: SshdHarness) -> Iterator[Path]:
    """A real ssh-agent holding the sshd's client key."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(sshd.client_key)], env=env, check=True, capture_output=True)
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=5)


async def test_ssh_agent_is_used_only_when_enabled(
    trusted_settings: Settings, sshd: SshdHarness, agent_socket: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
    monkeypatch.setenv("HOME", str(agent_socket.parent))  # no default keys in ~/.ssh
    trusted_settings.ssh.identity_files = []
    trusted_settings.ssh.config_files = []
    for use_agent, works in ((True, True), (False, False)):
        trusted_settings.ssh.use_agent = use_agent
        pool = TransportPool(trusted_settings)
        try:
            result = await pool.for_host(direct_host(sshd)).run("echo via-agent")
        finally:
            await pool.close()
        assert result.ok is works, result.error
        if not works:
            assert result.error is not None and "authentication refused" in result.error


def test_one_pool_across_two_event_loops(trusted_settings: Settings, sshd: SshdHarness) -> None:
    # As a CLI does: asyncio.run() twice with one pool, closing it each time.
    trusted_settings.ssh.max_concurrent_handshakes = 1  # so the semaphore is contended
    pool = TransportPool(trusted_settings)
    hosts = [direct_host(sshd, "one"), direct_host(sshd, "two")]

    async def one_loop(word: str) -> list[str]:
        try:
            results = await asyncio.gather(*(pool.for_host(h).run(f"echo {word}") for h in hosts))
            return [r.stdout for r in results]
        finally:
            await pool.close()

    assert asyncio.run(one_loop("first")) == ["first\n", "first\n"]
    assert asyncio.run(one_loop("second")) == ["second\n", "second\n"]
    assert pool.stats.connects == 4


# -- ProxyJump ---------------------------------------------------------------


async def test_proxyjump_through_the_jumped_alias(pool: TransportPool, sshd: SshdHarness) -> None:
    result = await pool.for_host(JUMPED).run("echo $SSH_CONNECTION")
    assert result.ok, result.error
    client_ip, _client_port, server_ip, server_port = result.stdout.split()
    # The target connection arrived on 127.0.0.2, sent by the jump host's sshd.
    assert (server_ip, server_port) == ("127.0.0.2", str(sshd.port))
    assert client_ip == "127.0.0.1"
    assert pool.open_connections == 2  # the hop and the target
    # A second host behind the same jump shares the hop.
    behind = Host(name="also-behind", address="127.0.0.2", port=sshd.port, proxy_jump="testhost")
    assert (await pool.for_host(behind).run("true")).ok
    assert (pool.stats.connects, pool.open_connections) == (3, 3)


async def test_proxyjump_hop_key_is_checked_strictly(
    trusted_settings: Settings, sshd: SshdHarness
) -> None:
    # Trust the target (127.0.0.2) but not the hop (127.0.0.1).
    trusted_settings.known_hosts_path.write_text(sshd.host_key_line("127.0.0.2") + "\n")
    pool = TransportPool(trusted_settings)
    try:
        with pytest.raises(HostKeyUnknown) as info:
            await pool.for_host(JUMPED).run("true")
        assert info.value.host == "testhost"
        assert info.value.fingerprint == sshd.host_key_fingerprint()
        assert getattr(info.value, "key_host", None) == "127.0.0.1"
        pool.trust_unknown(info.value)
        assert (await pool.for_host(JUMPED).run("echo ok")).stdout == "ok\n"
    finally:
        await pool.close()


async def test_unknown_hop_key_names_the_hop_and_each_host_behind_it(
    trusted_settings: Settings, sshd: SshdHarness
) -> None:
    # Nothing trusted: the hop (127.0.0.1) is met first, and its key is reported as the hop's.
    trusted_settings.known_hosts_path.write_text("")
    pool = TransportPool(trusted_settings)
    other = Host(name="also-behind", address="127.0.0.2", port=sshd.port, proxy_jump="testhost")
    try:
        errors: list[HostKeyUnknown] = []
        for host in (JUMPED, other):
            with pytest.raises(HostKeyUnknown) as info:
                await pool.for_host(host).run("true")
            errors.append(info.value)
        for error, target in zip(errors, (JUMPED.name, other.name), strict=True):
            assert (error.host, error.key_host, error.port) == ("testhost", "127.0.0.1", sshd.port)
            assert error.jump_for == target
            assert error.fingerprint == sshd.host_key_fingerprint()
            assert str(error).startswith(f"{target}: the host key of its jump host testhost ")
            assert f"itop trust {target}" in str(error)
        # The target's own key, met once the hop is trusted, is not a hop's.
        pool.trust_unknown(errors[0])
        with pytest.raises(HostKeyUnknown) as info:
            await pool.for_host(JUMPED).run("true")
        assert (info.value.host, info.value.key_host) == (JUMPED.name, "127.0.0.2")
        assert info.value.jump_for is None
    finally:
        await pool.close()


async def test_host_fields_override_the_ssh_config(
    pool: TransportPool, sshd: SshdHarness, tmp_path: Path
) -> None:
    wrong_key = generate_key(tmp_path / "wrong_key")
    # The alias gives the right key, the host record a wrong one first: both
    # are offered (as with `ssh -i`), so this still logs in.
    host = Host(name="t", ssh_alias="testhost", identity_file=str(wrong_key))
    assert (await pool.for_host(host).run("true")).ok
    # An explicit port wins over the alias's Port.
    elsewhere = Host(name="t2", ssh_alias="testhost", port=free_port())
    result = await pool.for_host(elsewhere).run("true")
    assert result.error is not None and f":{elsewhere.port}: connection refused" in result.error
