"""``--observe``: one read-only program with plain arguments, or refused with the reason.

Pure checks of :func:`observe_command`; the end-to-end refusal on a
production host over SSH is in tests/integration/test_change_gate_ssh.py.
"""

from __future__ import annotations

import shlex

import pytest

from itop_tui.ops.change_gate import ObserveRefused, observe_command


@pytest.mark.parametrize("command", [
    "df -h /",
    "uptime",
    "systemctl status sshd",
    "journalctl -u sshd -n 50 --no-pager",
    "dmesg -T",
    "find /var/log -name '*.gz' -mtime +7",
    "ss -tlnp",
    "ip addr show",
    "ip -4 -br addr show dev eth0",
    "ip -s -j link",
    "ip route get 127.0.0.1",
    "hostname -f",
    "date +%s",
    "date -u",
    "grep -c 'a b' /etc/hosts",
])
def test_read_only_commands_are_observed_as_literal_words(command: str) -> None:
    rendered = observe_command(command)
    assert shlex.split(rendered) == shlex.split(command)


@pytest.mark.parametrize(("command", "reason"), [
    ("ls; rm -rf /", "';' is shell"),
    ("cat /etc/*", "'*' is shell"),
    ("echo $HOME", "'$' is shell"),
    ("rm -rf /tmp/x", "rm is not on the read-only list"),
    ("/bin/ls", "is a path"),
    ("systemctl restart sshd", "systemctl restart is not read-only"),
    ("systemctl -H other status", "another machine"),
    ("journalctl --vacuum-size=1M", "changes the journal"),
    ("dmesg -c", "may clear"),
    ("dmesg --clear", "changes the kernel log"),
    ("find / -delete", "find -delete"),
    ("find / -fprintf /tmp/x %p", "find -fprintf"),
    ("date -s 2020-01-01", "might set the clock"),
    ("hostname evil", "could set the host name"),
    ("ss -K dst 127.0.0.1", "kills sockets"),
    ("ss -D /tmp/dump", "writes a file"),
    ("ss --diag=/tmp/dump", "writes a file"),
    ("ip link set lo down", "may change the network"),
    ("ip route flush", "may change the network"),
    # ip abbreviates options: -b and -batch read commands from a file.
    ("ip -batch addr show", "ip option -batch"),
    ("ip -b link", "ip option -b"),
    ("ip -force -batch route", "ip option -force"),
    ("ip -b /tmp/x", "ip option -b"),
    ("ip -n other addr", "ip option -n"),
    ("ip xfrm state", "ip xfrm is not observed"),
])
def test_writing_or_shell_commands_are_refused_with_the_reason(command: str, reason: str) -> None:
    with pytest.raises(ObserveRefused) as refused:
        observe_command(command)
    assert reason in str(refused.value)
