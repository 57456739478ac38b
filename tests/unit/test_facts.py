"""The discovery output parser, fed captures from several kinds of hosts."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from itop_tui.domain.facts import (
    DISCOVERY_SCRIPT,
    FACT_KEYS,
    FactsParseError,
    discovery_command,
    parse_cpu_model,
    parse_df,
    parse_discovery_output,
    parse_ip_addr,
    parse_mem_total,
    parse_os_release,
    parse_virtualization,
)
from itop_tui.services.local_facts import local_facts

# Captured on a Debian 12 container (x86_64) with the discovery script.
DEBIAN = """\
@@itop hostname
vm
@@itop uname_s
Linux
@@itop kernel
6.1.0-18-amd64
@@itop arch
x86_64
@@itop os_release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
@@itop cpu_count
2
@@itop cpu_model
model name\t: AMD EPYC 7B13
@@itop meminfo
MemTotal:       24684084 kB
@@itop df_typed
Filesystem              Type     1024-blocks     Used Available Capacity Mounted on
devtmpfs                devtmpfs    12334460        0  12334460       0% /dev
tmpfs                   tmpfs       24684084        0  24684084       0% /dev/shm
/dev/vda                ext4       264212084 22810640  83580272      22% /
/dev/vdb1               xfs          1048576   524288    524288      50% /srv/my data
@@itop ip_addr
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever preferred_lft forever
@@itop uptime
358.69 652.57
@@itop detect_virt
kvm
@@itop virt_hints
hypervisor
@@itop init
systemd
@@itop end
"""

# Alpine in docker: busybox df without -T, no ip, no systemd-detect-virt,
# no getconf (the grep fallback counted the processors).
ALPINE = """\
@@itop hostname
a1b2c3
@@itop uname_s
Linux
@@itop kernel
5.15.0-91-generic
@@itop arch
aarch64
@@itop os_release
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
@@itop cpu_count
4
@@itop cpu_model
@@itop meminfo
MemTotal:        8039236 kB
@@itop df
Filesystem           1024-blocks    Used Available Capacity Mounted on
overlay               61255492  9164236  48950868  16% /
tmpfs                    65536        0     65536   0% /dev
@@itop hostname_i
172.17.0.3 127.0.0.1
@@itop uptime
86400.00 1000.00
@@itop detect_virt
@@itop virt_hints
dockerenv
@@itop init
sh
@@itop end
"""


def test_debian_capture() -> None:
    facts = parse_discovery_output(DEBIAN)
    assert list(facts) == list(FACT_KEYS)
    assert facts["hostname"] == "vm"
    assert (facts["os_name"], facts["os_version"]) == ("Debian GNU/Linux", "12")
    assert (facts["kernel"], facts["arch"]) == ("6.1.0-18-amd64", "x86_64")
    assert facts["cpu_count"] == 2
    assert facts["cpu_model"] == "AMD EPYC 7B13"
    assert facts["mem_total"] == 24684084 * 1024
    assert facts["filesystems"] == [
        {"mount": "/", "fstype": "ext4", "size": 264212084 * 1024, "used": 22810640 * 1024,
         "avail": 83580272 * 1024},
        {"mount": "/srv/my data", "fstype": "xfs", "size": 1048576 * 1024,
         "used": 524288 * 1024, "avail": 524288 * 1024},
    ]
    assert facts["ip_addresses"] == ["192.0.2.2", "fe80::fc:ff:fe00:1"]
    assert facts["uptime_seconds"] == pytest.approx(358.69)
    assert facts["virtualization"] == "kvm"
    assert facts["init"] == "systemd"


def test_busybox_capture_uses_the_fallbacks() -> None:
    facts = parse_discovery_output(ALPINE)
    assert (facts["os_name"], facts["os_version"]) == ("Alpine Linux", "3.19.1")
    assert facts["arch"] == "aarch64"
    assert facts["cpu_count"] == 4
    assert facts["cpu_model"] is None
    assert facts["mem_total"] == 8039236 * 1024
    assert facts["filesystems"] == [
        {"mount": "/", "fstype": None, "size": 61255492 * 1024, "used": 9164236 * 1024,
         "avail": 48950868 * 1024},
        {"mount": "/dev", "fstype": None, "size": 65536 * 1024, "used": 0, "avail": 65536 * 1024},
    ]
    assert facts["ip_addresses"] == ["172.17.0.3"]
    assert facts["uptime_seconds"] == 86400.0
    assert facts["virtualization"] == "docker"
    assert facts["init"] == "sh"


def test_missing_sections_leave_facts_unknown() -> None:
    facts = parse_discovery_output("@@itop hostname\nbox\n@@itop kernel\n")
    assert facts["hostname"] == "box"
    assert facts["kernel"] is None
    assert facts["os_name"] is None
    assert facts["cpu_count"] is None
    assert facts["filesystems"] == []
    assert facts["ip_addresses"] == []
    assert facts["virtualization"] == "none"
    assert list(facts) == list(FACT_KEYS)


def test_output_cut_in_the_middle_keeps_what_came() -> None:
    cut = DEBIAN[: DEBIAN.index("/dev/vda") + 30]
    facts = parse_discovery_output(cut)
    assert facts["mem_total"] == 24684084 * 1024
    assert facts["filesystems"] == []  # the half line is not a filesystem
    assert facts["ip_addresses"] == []
    assert facts["init"] is None


def test_garbage_in_sections_is_ignored() -> None:
    text = (
        "motd banner before the sections\n"
        "@@itop cpu_count\nunknown\n@@itop meminfo\nMemTotal: lots\n"
        "@@itop uptime\n-5 0\n@@itop detect_virt\n$(rm -rf /)\n@@itop virt_hints\n"
    )
    facts = parse_discovery_output(text)
    assert facts["cpu_count"] is None
    assert facts["mem_total"] is None
    assert facts["uptime_seconds"] is None
    assert facts["virtualization"] == "none"


def test_output_without_any_section_is_an_error() -> None:
    with pytest.raises(FactsParseError):
        parse_discovery_output("sh: 1: syntax error\n")
    with pytest.raises(FactsParseError):
        parse_discovery_output("")


def test_os_release_quoting() -> None:
    parsed = parse_os_release(
        "# comment\nNAME='Fedora Linux'\nVERSION_ID=39\nPRETTY_NAME=\"Fedora \\\"39\\\"\"\n"
        "BROKEN=\"unterminated\n"
    )
    assert parsed["NAME"] == "Fedora Linux"
    assert parsed["VERSION_ID"] == "39"
    assert parsed["PRETTY_NAME"] == 'Fedora "39"'
    assert parsed["BROKEN"] == "unterminated"


def test_cpu_model_on_other_architectures() -> None:
    assert parse_cpu_model("processor\t: 0\nHardware\t: BCM2835\n") == "BCM2835"
    assert parse_cpu_model("processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n") == (
        "POWER9 (raw), altivec supported"
    )
    assert parse_cpu_model("Processor\t: ARMv7 Processor rev 4 (v7l)\n") == (
        "ARMv7 Processor rev 4 (v7l)"
    )
    assert parse_cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") is None


def test_mem_total_units() -> None:
    assert parse_mem_total("MemFree: 1 kB\nMemTotal:  2048 kB\n") == 2048 * 1024
    assert parse_mem_total("MemTotal: 2048\n") == 2048 * 1024
    assert parse_mem_total("MemTotal:\n") is None


def test_df_skips_pseudo_filesystems_and_duplicates() -> None:
    lines = [
        "Filesystem Type 1024-blocks Used Available Capacity Mounted on",
        "tmpfs tmpfs 100 0 100 0% /run",
        "/dev/sda1 ext4 100 50 50 50% /",
        "/dev/sda1 ext4 100 50 50 50% /",
        "server:/x nfs4 200 100 100 50% /mnt/x",
        "weird line",
    ]
    mounts = [fs["mount"] for fs in parse_df(lines, typed=True)]
    assert mounts == ["/", "/mnt/x"]


def test_ip_addr_keeps_order_and_drops_loopback() -> None:
    lines = [
        "2: eth0 inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0",
        "2: eth0 inet6 2001:db8::5/64 scope global",
        "3: eth1 inet 10.0.0.5/24 scope global eth1",
        "1: lo inet 127.0.0.1/8 scope host lo",
    ]
    assert parse_ip_addr(lines) == ["10.0.0.5", "2001:db8::5"]


def test_virtualization_prefers_the_detector() -> None:
    assert parse_virtualization("oracle", ["hypervisor"]) == "oracle"
    assert parse_virtualization("none", ["dockerenv"]) == "none"
    assert parse_virtualization(None, ["containerenv"]) == "podman"
    assert parse_virtualization(None, ["hypervisor"]) == "vm"
    assert parse_virtualization(None, []) == "none"


def test_command_is_quoted_for_any_login_shell() -> None:
    command = discovery_command()
    assert command.startswith("sh -c '")
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert "@@itop end" in done.stdout


def test_script_output_matches_local_facts() -> None:
    """The remote script and psutil agree on this machine."""
    done = subprocess.run(["sh", "-c", DISCOVERY_SCRIPT], capture_output=True, text=True, timeout=30)
    remote = parse_discovery_output(done.stdout)
    local = local_facts()
    assert list(local) == list(FACT_KEYS)
    for key in ("hostname", "os_name", "os_version", "kernel", "arch", "cpu_count", "cpu_model",
                "mem_total", "virtualization", "init"):
        assert remote[key] == local[key], key
    assert remote["cpu_count"] == psutil.cpu_count()
    assert remote["mem_total"] == psutil.virtual_memory().total
    assert [fs["mount"] for fs in remote["filesystems"]] == [fs["mount"] for fs in local["filesystems"]]
    assert sorted(remote["ip_addresses"]) == sorted(local["ip_addresses"])
    assert remote["uptime_seconds"] == pytest.approx(local["uptime_seconds"], abs=5)
