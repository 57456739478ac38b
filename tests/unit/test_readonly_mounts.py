"""Read-only mounts: parsed from /proc/mounts, joined to df, kept out of fs_max_percent.

The mount table and df output below were captured on the development VM
with four tmpfs mounts made for the purpose (one under a path with a space,
one filled and remounted read-only, one path mounted twice: writable below,
read-only on top); a line of the sandbox's own tooling was left out. The
snap squashfs and ISO lines are added by hand in the exact shape an Ubuntu
desktop prints them.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itop_tui.domain.metrics import Sample, SampleBuilder, compute_sample
from itop_tui.domain.procfs import (
    COLLECT_LOOP,
    FrameAssembler,
    is_read_only,
    mark_mounts,
    parse_df,
    parse_frame,
    parse_mounts,
    unescape_mount_field,
)
from itop_tui.domain.thresholds import DEFAULT_THRESHOLDS, ThresholdEvaluator

CAPTURED_MOUNTS = r"""proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334460k,nr_inodes=3083615,mode=755 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684084k 0 0
devpts /dev/pts devpts rw,relatime,mode=600,ptmxmode=000 0 0
/dev/vda / ext4 rw,relatime,discard,resv_strict,resuid=65534,resgid=65534 0 0
devpts /dev/pts devpts rw,relatime,mode=600,ptmxmode=000 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684084k 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
none /tmp/itopcap.pGP9/with\040space tmpfs rw,relatime,size=1024k 0 0
none /tmp/itopcap.pGP9/ro tmpfs ro,relatime,size=1024k 0 0
none /tmp/itopcap.pGP9/twice tmpfs rw,relatime,size=2048k 0 0
none /tmp/itopcap.pGP9/twice tmpfs ro,relatime,size=1024k 0 0
""".splitlines()

CAPTURED_DF = """\
Filesystem              1024-blocks     Used Available Capacity Mounted on
devtmpfs                   12334460        0  12334460       0% /dev
tmpfs                      24684084        0  24684084       0% /dev/shm
/dev/vda                  264212084 24792360  81598552      24% /
tmpfs                      12342040        0  12342040       0% /sys/fs/cgroup
none                           1024        0      1024       0% /tmp/itopcap.pGP9/with space
none                           1024     1024         0     100% /tmp/itopcap.pGP9/ro
none                           1024        0      1024       0% /tmp/itopcap.pGP9/twice
""".splitlines()

SNAP_AND_ISO_MOUNTS = r"""/dev/loop3 /snap/core22/1380 squashfs ro,nodev,relatime,errors=continue,threads=single 0 0
/dev/sr0 /media/ubuntu/Ubuntu\04024.04\040LTS\040amd64 iso9660 ro,nosuid,nodev,relatime,nojoliet,check=s,map=n,blocksize=2048,uid=1000,gid=1000,dmode=500,fmode=400,iocharset=utf8 0 0
""".splitlines()

SNAP_AND_ISO_DF = """\
/dev/loop3                    75776    75776         0     100% /snap/core22/1380
/dev/sr0                    6114656  6114656         0     100% /media/ubuntu/Ubuntu 24.04 LTS amd64
""".splitlines()

ROOT_PERCENT = 24792360 / (24792360 + 81598552) * 100.0


def captured_frame(with_snaps: bool = True) -> dict[str, list[str]]:
    """The df frame's two sections, as the assembler hands them over."""
    mounts = CAPTURED_MOUNTS + (SNAP_AND_ISO_MOUNTS if with_snaps else [])
    df = CAPTURED_DF + (SNAP_AND_ISO_DF if with_snaps else [])
    return {"mounts": mounts, "df": df}


def by_mount(sample: Sample) -> dict[str, tuple[str, bool, float | None]]:
    return {fs.mount: (fs.fstype, fs.read_only, fs.percent) for fs in sample.filesystems}


# --------------------------------------------------------------------------
# /proc/mounts


def test_escapes_are_decoded() -> None:
    assert unescape_mount_field(r"/a\040b\011c\134d\012e") == "/a b\tc\\d\ne"
    assert unescape_mount_field("/plain") == "/plain"
    # Not an escape: too short, not octal, or beyond a byte.
    assert unescape_mount_field(r"/x\04") == r"/x\04"
    assert unescape_mount_field(r"/x\999") == r"/x\999"
    assert unescape_mount_field(r"/x\400") == r"/x\400"


def test_captured_mount_table() -> None:
    mounts = parse_mounts(CAPTURED_MOUNTS + SNAP_AND_ISO_MOUNTS)
    assert mounts["/"].fstype == "ext4" and not mounts["/"].read_only
    assert "/tmp/itopcap.pGP9/with space" in mounts
    assert not mounts["/tmp/itopcap.pGP9/with space"].read_only
    assert mounts["/tmp/itopcap.pGP9/ro"].read_only
    # Mounted twice: the later (top) mount is the one df shows.
    assert mounts["/tmp/itopcap.pGP9/twice"].read_only
    assert mounts["/snap/core22/1380"].fstype == "squashfs"
    assert mounts["/snap/core22/1380"].read_only
    iso = mounts["/media/ubuntu/Ubuntu 24.04 LTS amd64"]
    assert (iso.fstype, iso.read_only) == ("iso9660", True)
    assert len(mounts) == len({line.split()[1] for line in CAPTURED_MOUNTS}) + 2


def test_the_last_of_two_mounts_wins_either_way() -> None:
    rw_on_ro = [
        "none /data tmpfs ro,relatime 0 0",
        "none /data tmpfs rw,relatime 0 0",
    ]
    assert not parse_mounts(rw_on_ro)["/data"].read_only
    assert parse_mounts(list(reversed(rw_on_ro)))["/data"].read_only


@pytest.mark.parametrize(
    ("options", "fstype", "expected"),
    [
        ("ro,relatime", "ext4", True),
        ("rw,relatime", "ext4", False),
        ("rw,errors=remount-ro", "ext4", False),  # "remount-ro" is not "ro"
        ("rw,relatime", "squashfs", True),  # cannot be written whatever it says
        ("rw", "iso9660", True),
        ("", "", False),
    ],
)
def test_is_read_only(options: str, fstype: str, expected: bool) -> None:
    assert is_read_only(options, fstype) is expected


# --------------------------------------------------------------------------
# Joined to df, and kept out of fs_max_percent


def test_frame_marks_filesystems_and_fullest_ignores_read_only() -> None:
    raw = parse_frame(captured_frame(), "ubuntu", 0.0)
    sample = compute_sample(None, raw)
    rows = by_mount(sample)
    # Every df row is kept, read-only ones included (the drill-down lists them).
    assert len(sample.filesystems) == len(CAPTURED_DF) - 1 + len(SNAP_AND_ISO_DF)
    assert rows["/"][:2] == ("ext4", False)
    assert rows["/tmp/itopcap.pGP9/with space"][:2] == ("tmpfs", False)
    assert rows["/tmp/itopcap.pGP9/ro"] == ("tmpfs", True, 100.0)
    assert rows["/tmp/itopcap.pGP9/twice"][:2] == ("tmpfs", True)
    assert rows["/snap/core22/1380"] == ("squashfs", True, 100.0)
    assert rows["/media/ubuntu/Ubuntu 24.04 LTS amd64"] == ("iso9660", True, 100.0)
    assert sample.fs_max_percent == pytest.approx(ROOT_PERCENT)
    assert sample.values()["fs_max_percent"] == pytest.approx(ROOT_PERCENT)


def test_a_full_writable_filesystem_still_counts() -> None:
    frame = captured_frame()
    frame["df"] = [*frame["df"], "/dev/vdb 1000 1000 0 100% /var/full"]
    frame["mounts"] = [*frame["mounts"], "/dev/vdb /var/full xfs rw,relatime 0 0"]
    sample = compute_sample(None, parse_frame(frame, "ubuntu", 0.0))
    assert sample.fs_max_percent == 100.0


def test_default_threshold_opens_no_problem_for_snaps_and_isos() -> None:
    threshold = DEFAULT_THRESHOLDS["fs_max_percent"]
    quiet, full = ThresholdEvaluator(), ThresholdEvaluator()
    builder = SampleBuilder()
    events = []
    unmarked_events = []
    for step in range(4):
        time = step * threshold.min_duration
        raw = parse_frame(captured_frame(), "ubuntu", time)
        events += quiet.evaluate_sample(builder.add(raw), {"fs_max_percent": threshold})
        # The same host as seen before read-only marks: the snap holds it at 100 %.
        unmarked = replace(raw, filesystems=parse_df(captured_frame()["df"]))
        unmarked_events += full.evaluate_sample(
            compute_sample(None, unmarked), {"fs_max_percent": threshold}
        )
    assert events == [] and quiet.open_problems() == []
    assert [(e.kind, e.severity) for e in unmarked_events][-1] == ("opened", "critical")


def test_marks_carry_over_to_frames_without_df() -> None:
    builder = SampleBuilder()
    first = builder.add(parse_frame(captured_frame(), "h", 0.0))
    second = builder.add(parse_frame({}, "h", 2.0))
    assert second.filesystems == first.filesystems
    assert by_mount(second)["/snap/core22/1380"][1] is True


def test_round_trip_keeps_the_marks_and_reads_old_samples() -> None:
    sample = compute_sample(None, parse_frame(captured_frame(), "h", 1_700_000_000.0))
    data = sample.to_dict()
    snap = next(fs for fs in data["filesystems"] if fs["mount"] == "/snap/core22/1380")
    assert (snap["fstype"], snap["read_only"]) == ("squashfs", True)
    again = Sample.from_dict(data)
    assert again.filesystems == sample.filesystems
    assert again.fs_max_percent == pytest.approx(ROOT_PERCENT, abs=0.05)
    # A sample stored before mount types were read: unknown type, writable.
    for fs in data["filesystems"]:
        del fs["fstype"], fs["read_only"]
    old = Sample.from_dict(data)
    assert {(fs.fstype, fs.read_only) for fs in old.filesystems} == {("", False)}
    assert old.fs_max_percent == 100.0


# --------------------------------------------------------------------------
# Broken and partial input


def test_a_host_without_proc_mounts_has_no_marks() -> None:
    for sections in ({"df": CAPTURED_DF}, {"df": CAPTURED_DF, "mounts": []}):
        raw = parse_frame(sections, "old", 0.0)
        assert raw.filesystems is not None and len(raw.filesystems) == len(CAPTURED_DF) - 1
        assert all(fs.fstype == "" and not fs.read_only for fs in raw.filesystems)
    # Without df there are no filesystems at all, mount table or not.
    assert parse_frame({"mounts": CAPTURED_MOUNTS}, "h", 0.0).filesystems is None


def test_broken_mount_lines_are_skipped() -> None:
    mounts = parse_mounts(
        [
            "",
            "garbage",
            "none /short tmpfs",  # no options: nothing to tell
            "none relative tmpfs ro 0 0",  # not a path
            "\ufffd\ufffd /bin\x1b[2Jary squashfs ro 0 0",
            "overlay /var/lib/docker/overlay2/abc/merged overlay ro,relatime,lowerdir=/a:/b:/c",
            r"none /odd\04 tmpfs ro 0 0",
        ]
    )
    assert set(mounts) == {"/binary", "/var/lib/docker/overlay2/abc/merged", "/odd\\04"}
    assert all(entry.read_only for entry in mounts.values())


def test_a_mount_point_with_control_sequences_joins_its_df_row() -> None:
    filesystems = parse_df(["/dev/x 10 10 0 100% /mnt/\x1b[2Jevil"])
    marked = mark_mounts(filesystems, parse_mounts(["/dev/x /mnt/\x1b[2Jevil ext4 ro 0 0"]))
    assert [(fs.mount, fs.read_only) for fs in marked] == [("/mnt/evil", True)]


def test_assembler_keeps_the_mounts_section() -> None:
    loop_lines = [
        "@@itop-begin 0",
        "@@itop-section procs",
        "12",
        "@@itop-section mounts",
        *SNAP_AND_ISO_MOUNTS,
        "@@itop-section df",
        *SNAP_AND_ISO_DF,
        "@@itop-end 0",
    ]
    frames = list(FrameAssembler().feed_lines(loop_lines))
    assert [frame.seq for frame in frames] == [0]
    raw = parse_frame(frames[0], "h", 0.0)
    assert raw.filesystems is not None
    assert [fs.read_only for fs in raw.filesystems] == [True, True]
    assert compute_sample(None, raw).fs_max_percent is None
    # The loop prints the sections in that order, in the df frame only.
    assert COLLECT_LOOP.index("@@itop-section mounts") < COLLECT_LOOP.index("@@itop-section df")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=80), max_size=20),
    st.lists(st.text(max_size=80), max_size=10),
)
def test_parse_frame_never_raises_on_any_mount_table(mounts: list[str], df: list[str]) -> None:
    tail = [f"{line} tmpfs ro 0 0" for line in mounts]
    raw = parse_frame({"mounts": mounts + tail, "df": df + CAPTURED_DF}, "h", 0.0)
    sample = compute_sample(raw, raw)
    assert raw.filesystems is not None and len(raw.filesystems) >= len(CAPTURED_DF) - 1
    share = sample.fs_max_percent
    assert share is None or 0.0 <= share <= 100.0
