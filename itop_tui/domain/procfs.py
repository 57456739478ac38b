"""The remote collection loop, and parsers from its output to raw counters.

Live metrics come from one long-lived SSH channel per host running
:data:`COLLECT_LOOP`, which prints a *frame* per interval::

    @@itop-begin 7
    ==> /proc/stat <==
    cpu  3127 0 1895 55378 289 0 48 9 0 0
    ...
    ==> /proc/meminfo <==
    ...
    @@itop-section procs
    231
    @@itop-section mounts        (every Nth frame only, with df)
    /dev/vda / ext4 rw,relatime 0 0
    ...
    @@itop-section df            (every Nth frame only)
    Filesystem 1024-blocks Used Available Capacity Mounted on
    ...
    @@itop-end 7

The ``==> FILE <==`` headers are the ones POSIX ``head`` prints when given
several files: one ``head`` reads all six ``/proc`` files, so a frame costs
the host two forks (``head`` and ``sleep``) instead of one per file. The
mount table is read in the df frame only, just before df, so the two agree:
it says which of df's filesystems are read-only (see :func:`mark_mounts`).
A host without ``/proc/mounts`` sends an empty section, and an older loop
none at all; either way its filesystems carry no read-only marks.

:class:`FrameAssembler` turns lines back into frames, and the ``parse_*``
functions turn frame sections into counters. Parsers never raise on bad
input: unreadable lines are skipped and missing values are ``None``.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from itop_tui.domain.output import strip_control

FRAME_BEGIN = "@@itop-begin"
FRAME_END = "@@itop-end"
SECTION_MARK = "@@itop-section"

# Paths read by one ``head`` call, and the section name each becomes.
PROC_SECTIONS: dict[str, str] = {
    "/proc/stat": "stat",
    "/proc/meminfo": "meminfo",
    "/proc/loadavg": "loadavg",
    "/proc/diskstats": "diskstats",
    "/proc/net/dev": "net_dev",
    "/proc/uptime": "uptime",
}
EXTRA_SECTIONS = ("procs", "mounts", "df")
SECTIONS = (*PROC_SECTIONS.values(), *EXTRA_SECTIONS)

# POSIX sh only, plus head, sleep, df (and timeout when the host has it).
# Every write is checked: when the client goes away the channel closes, the
# next write fails (SIGPIPE kills the shell, or echo returns an error when
# SIGPIPE is ignored) and the loop ends within one interval. ``df`` runs
# under ``timeout`` when available because a dead NFS mount would otherwise
# hang the whole stream. The mount table is cut at 8000 lines so that a
# df frame of a host with thousands of mounts (a busy Kubernetes node) stays
# within the frame assembler's line budget; mounts past the cut just carry
# no read-only mark. ``{interval}``, ``{fallback_interval}`` and
# ``{df_every}`` are filled in by :func:`collect_command`; the script has no
# other braces.
COLLECT_LOOP = """\
LC_ALL=C
export LC_ALL
T=
timeout 5 true >/dev/null 2>&1 && T='timeout 20'
i=0
while :
do
  echo "@@itop-begin $i" || exit
  head -n 100000 /proc/stat /proc/meminfo /proc/loadavg /proc/diskstats /proc/net/dev /proc/uptime 2>/dev/null
  set -- /proc/[0-9]*
  echo "@@itop-section procs" || exit
  echo "$#" || exit
  if [ $((i % {df_every})) -eq 0 ]
  then
    echo "@@itop-section mounts" || exit
    head -n 8000 /proc/mounts 2>/dev/null
    echo "@@itop-section df" || exit
    $T df -kP 2>/dev/null
  fi
  echo "@@itop-end $i" || exit
  i=$((i + 1))
  sleep {interval} 2>/dev/null || sleep {fallback_interval} || exit
done
"""

MIN_INTERVAL = 0.05


def collect_command(interval: float = 2.0, df_every: int = 15) -> str:
    """The command to run on a host: :data:`COLLECT_LOOP` under ``/bin/sh``.

    ``exec`` replaces the login shell (whatever it is) by ``/bin/sh``, so no
    idle shell lingers beside the loop. Fractional intervals need a ``sleep``
    that accepts them (GNU, BusyBox); elsewhere the loop falls back to the
    next whole second. ``df_every`` is how many frames apart ``df`` runs.
    """
    if not math.isfinite(interval) or interval < MIN_INTERVAL:
        raise ValueError(
            f"interval must be a number of seconds >= {MIN_INTERVAL}, got {interval!r}"
        )
    if df_every < 1:
        raise ValueError(f"df_every must be >= 1, got {df_every!r}")
    text = f"{interval:.3f}".rstrip("0").rstrip(".")
    script = COLLECT_LOOP.format(
        interval=text,
        fallback_interval=max(1, math.ceil(interval)),
        df_every=int(df_every),
    )
    return "exec /bin/sh -c " + shlex.quote(script)


# --------------------------------------------------------------------------
# Frames


@dataclass
class Frame:
    """One complete frame: its sequence number and section -> lines."""

    seq: int | None
    sections: dict[str, list[str]] = field(default_factory=dict)


_HEAD_HEADER = re.compile(r"^==> (.*) <==$")


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


class FrameAssembler:
    """Reassembles frames from the loop's output, line by line.

    Lines outside a frame are counted as garbage and dropped; a frame cut
    short (a new begin marker before its end, or an end marker with another
    sequence number) is dropped whole, so a truncated frame never becomes a
    sample. Memory is bounded: lines are cut at ``max_line_length`` and a
    frame with more than ``max_lines`` lines is dropped.
    """

    def __init__(self, max_lines: int = 20_000, max_line_length: int = 65_536) -> None:
        self.max_lines = max_lines
        self.max_line_length = max_line_length
        self.frames = 0
        self.dropped_frames = 0
        self.garbage_lines = 0
        self._seq: int | None = None
        self._sections: dict[str, list[str]] | None = None
        self._section: list[str] | None = None
        self._lines = 0
        self._partial: list[str] = []
        self._partial_len = 0

    @property
    def in_frame(self) -> bool:
        """Whether a frame has begun and not yet ended."""
        return self._sections is not None

    def feed(self, line: str) -> Frame | None:
        """Take one line (with or without its newline); return a frame it completes."""
        line = line.rstrip("\r\n")
        # Markers are rare; content lines take the short path below.
        if line[:2] == "@@" or line[:4] == "==> ":
            handled, frame = self._marker(line)
            if handled:
                return frame
        section = self._section
        if section is None:
            if line and not line.isspace():
                self.garbage_lines += 1
            return None
        if not line or line.isspace():
            return None
        self._lines += 1
        if self._lines > self.max_lines:
            self._abandon()
            return None
        section.append(line[: self.max_line_length])
        return None

    def _marker(self, line: str) -> tuple[bool, Frame | None]:
        """Handle a marker line: (whether it was one, the frame it completes)."""
        if line.startswith(FRAME_BEGIN):
            if self._sections is not None:
                self.dropped_frames += 1
            self._seq = _int_or_none(line[len(FRAME_BEGIN) :].strip())
            self._sections = {}
            self._section = None
            self._lines = 0
            return True, None
        if self._sections is None:
            return False, None
        if line.startswith(FRAME_END):
            return True, self._finish(_int_or_none(line[len(FRAME_END) :].strip()))
        if line.startswith(SECTION_MARK):
            name = line[len(SECTION_MARK) :].strip()
            self._open_section(name if name in EXTRA_SECTIONS else None)
            return True, None
        header = _HEAD_HEADER.match(line)
        if header is not None:
            self._open_section(PROC_SECTIONS.get(header.group(1)))
            return True, None
        return False, None

    def feed_lines(self, lines: Iterable[str]) -> Iterator[Frame]:
        """Feed many lines, yielding each frame as it completes."""
        for line in lines:
            frame = self.feed(line)
            if frame is not None:
                yield frame

    def feed_text(self, chunk: str) -> list[Frame]:
        """Feed a chunk of text that may end in the middle of a line."""
        pieces = chunk.split("\n")
        if len(pieces) == 1:
            self._keep(chunk)
            return []
        if self._partial:
            self._keep(pieces[0])
            pieces[0] = "".join(self._partial)
            self._partial = []
            self._partial_len = 0
        frames: list[Frame] = []
        for index in range(len(pieces) - 1):
            frame = self.feed(pieces[index])
            if frame is not None:
                frames.append(frame)
        self._keep(pieces[-1])
        return frames

    def _keep(self, piece: str) -> None:
        # Room for a marker line even when content lines are bounded tighter.
        room = max(self.max_line_length, 256) - self._partial_len
        if room > 0 and piece:
            piece = piece[:room]
            self._partial.append(piece)
            self._partial_len += len(piece)

    def _open_section(self, name: str | None) -> None:
        assert self._sections is not None
        if name is None:
            self._section = None
            return
        self._section = self._sections.setdefault(name, [])

    def _abandon(self) -> None:
        self.dropped_frames += 1
        self._sections = None
        self._section = None
        self._seq = None

    def _finish(self, seq: int | None) -> Frame | None:
        sections = self._sections
        begin_seq = self._seq
        self._sections = None
        self._section = None
        self._seq = None
        if sections is None or seq != begin_seq:
            self.dropped_frames += 1
            return None
        self.frames += 1
        return Frame(seq=seq, sections=sections)


# --------------------------------------------------------------------------
# Raw counters


CPU_FIELDS = (
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
)


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative CPU time per state, in any one unit (ticks or seconds).

    Fields a kernel does not report (``steal`` before 2.6.11, ``guest``
    before 2.6.24, ``guest_nice`` before 2.6.33) are 0.
    """

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0

    def values(self) -> tuple[float, ...]:
        """The fields in /proc/stat order."""
        return tuple(getattr(self, name) for name in CPU_FIELDS)

    @property
    def total(self) -> float:
        """All time, without guest time (already counted in user and nice)."""
        return sum(self.values()) - self.guest - self.guest_nice


@dataclass
class CpuStat:
    """The aggregate ``cpu`` line and the per-core ``cpuN`` lines."""

    total: CpuTimes | None = None
    cores: dict[int, CpuTimes] = field(default_factory=dict)


@dataclass
class MemInfo:
    """Memory and swap sizes in bytes; ``None`` where /proc/meminfo lacks them.

    ``available`` is MemAvailable, or MemFree + Buffers + Cached on kernels
    before 3.14 that do not report it (``available_estimated`` is then true).
    """

    total: int | None = None
    available: int | None = None
    free: int | None = None
    swap_total: int | None = None
    swap_free: int | None = None
    available_estimated: bool = False


@dataclass
class LoadAvg:
    """Load averages and the running/total scheduling entities (threads)."""

    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    running: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class DiskCounters:
    """Cumulative bytes read and written, and milliseconds spent doing I/O."""

    read_bytes: int
    write_bytes: int
    io_ms: int


@dataclass(frozen=True, slots=True)
class NetCounters:
    """Cumulative bytes received and transmitted on one interface."""

    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True, slots=True)
class Filesystem:
    """One ``df -kP`` row, sizes in bytes.

    ``fstype`` (``""`` when unknown) and ``read_only`` come from the mount
    table. A read-only filesystem cannot fill any further (a snap's squashfs
    or a mounted ISO is always 100 % used), so it is listed but never counts
    as the fullest filesystem.
    """

    filesystem: str
    mount: str
    size: int
    used: int
    avail: int
    fstype: str = ""
    read_only: bool = False

    @property
    def percent(self) -> float | None:
        """Used share of the space available to users, as ``df`` computes it."""
        room = self.used + self.avail
        if room <= 0:
            return None
        return max(0.0, min(100.0, self.used / room * 100.0))


@dataclass
class RawSample:
    """Everything one frame said about a host, as cumulative counters.

    ``time`` is when the client received the frame (seconds, any epoch the
    caller keeps consistent). ``filesystems`` is ``None`` for frames without
    a df section (df runs only every Nth frame).
    """

    host: str
    time: float
    cpu: CpuStat = field(default_factory=CpuStat)
    memory: MemInfo = field(default_factory=MemInfo)
    load: LoadAvg = field(default_factory=LoadAvg)
    disks: dict[str, DiskCounters] = field(default_factory=dict)
    net: dict[str, NetCounters] = field(default_factory=dict)
    uptime: float | None = None
    procs: int | None = None
    filesystems: list[Filesystem] | None = None


# --------------------------------------------------------------------------
# Parsers


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _counter(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _cpu_times(fields: Sequence[str]) -> CpuTimes | None:
    values: list[float] = []
    for text in fields[: len(CPU_FIELDS)]:
        value = _counter(text)
        if value is None:
            return None
        values.append(float(value))
    if len(values) < 4:  # user nice system idle: present on every kernel
        return None
    return CpuTimes(*values)


def parse_cpu(lines: Iterable[str]) -> CpuStat:
    """CPU times from /proc/stat: the aggregate line and each core.

    A core line shorter than the aggregate line is taken as truncated and
    skipped (all lines of one kernel have the same number of fields).
    """
    stat = CpuStat()
    total_width = 0
    cores: dict[int, tuple[int, CpuTimes]] = {}
    for line in lines:
        parts = line.split()
        if not parts or not parts[0].startswith("cpu"):
            continue
        times = _cpu_times(parts[1:])
        if times is None:
            continue
        label = parts[0][3:]
        width = len(parts) - 1
        if label == "":
            stat.total = times
            total_width = width
        elif label.isascii() and label.isdigit():
            cores[int(label)] = (width, times)
    stat.cores = {
        index: times for index, (width, times) in sorted(cores.items()) if width >= total_width
    }
    return stat


_MEMINFO_KEYS = frozenset(
    ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree")
)


def parse_meminfo(lines: Iterable[str]) -> MemInfo:
    """Memory and swap sizes (bytes) from /proc/meminfo."""
    values: dict[str, int] = {}
    for line in lines:
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep or key not in _MEMINFO_KEYS:
            continue
        parts = rest.split()
        if not parts:
            continue
        number = _counter(parts[0])
        if number is None:
            continue
        unit = parts[1] if len(parts) > 1 else ""
        values[key] = number * 1024 if unit == "kB" else number
    info = MemInfo(
        total=values.get("MemTotal"),
        available=values.get("MemAvailable"),
        free=values.get("MemFree"),
        swap_total=values.get("SwapTotal"),
        swap_free=values.get("SwapFree"),
    )
    if info.available is None:
        parts_present = [values.get(key) for key in ("MemFree", "Buffers", "Cached")]
        if all(part is not None for part in parts_present):
            info.available = sum(part for part in parts_present if part is not None)
            info.available_estimated = True
    return info


def parse_loadavg(lines: Iterable[str]) -> LoadAvg:
    """Load averages and running/total from /proc/loadavg."""
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        load = LoadAvg()
        numbers = [_number(part) for part in parts[:3]]
        numbers += [None] * (3 - len(numbers))
        load.load1, load.load5, load.load15 = numbers
        if len(parts) > 3:
            running, sep, total = parts[3].partition("/")
            if sep:
                load.running = _counter(running)
                load.total = _counter(total)
        return load
    return LoadAvg()


# Devices that are not disks (loop, RAM disks, compressed RAM swap, floppy).
_NOT_DISK = re.compile(r"(?:loop|ram|zram|fd)\d+")
# Devices stacked on other disks: counting them too would count I/O twice.
_STACKED = re.compile(r"(?:dm-|md)\d+")
# Partition names recognisable without their parent line.
_PARTITION = re.compile(r"(?:[shv]d[a-z]+|xvd[a-z]+)\d+|(?:nvme\d+n\d+|mmcblk\d+|nbd\d+)p\d+")
SECTOR_BYTES = 512  # diskstats counts 512-byte sectors whatever the device's own size


def _is_partition(name: str, names: set[str]) -> bool:
    # The kernel names partitions DISK + N, or DISK + pN when DISK ends in a
    # digit; so nbd10 is not a partition of nbd1 but nvme0n1p1 is one of nvme0n1.
    for cut in range(len(name) - 1, 0, -1):
        parent = name[:cut]
        if parent not in names:
            continue
        suffix = name[cut:]
        if parent[-1].isdigit():
            if suffix.startswith("p") and suffix[1:].isdigit() and suffix[1:].isascii():
                return True
        elif suffix.isdigit() and suffix.isascii():
            return True
    return _PARTITION.fullmatch(name) is not None


def is_whole_disk(name: str, names: set[str], include_stacked: bool = False) -> bool:
    """Whether a block device name is a whole disk worth reporting.

    ``names`` are all device names of the host, used to recognise partitions
    by their parent. Loop, RAM and floppy devices are never disks;
    device-mapper and md devices only with ``include_stacked``.
    """
    if _NOT_DISK.fullmatch(name):
        return False
    if not include_stacked and _STACKED.fullmatch(name):
        return False
    return not _is_partition(name, names)


def parse_diskstats(lines: Iterable[str], include_stacked: bool = False) -> dict[str, DiskCounters]:
    """Bytes read/written and I/O time per whole disk from /proc/diskstats.

    Lines in the short 4-field format (partitions before Linux 2.6.25) and
    lines with too few fields are skipped.
    """
    rows: dict[str, DiskCounters] = {}
    names: set[str] = set()
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        name = strip_control(parts[2])
        if not name:
            continue
        names.add(name)
        if len(parts) < 14:
            continue
        # Fields after the name: 3rd sectors read, 7th sectors written, 10th io_ticks (ms).
        read, written, busy = _counter(parts[5]), _counter(parts[9]), _counter(parts[12])
        if read is None or written is None or busy is None:
            continue
        rows[name] = DiskCounters(read * SECTOR_BYTES, written * SECTOR_BYTES, busy)
    return {
        name: counters
        for name, counters in rows.items()
        if is_whole_disk(name, names, include_stacked)
    }


def parse_net_dev(lines: Iterable[str]) -> dict[str, NetCounters]:
    """Bytes received/transmitted per interface from /proc/net/dev, without ``lo``."""
    interfaces: dict[str, NetCounters] = {}
    for line in lines:
        if "|" in line:
            continue  # the two header lines
        name, sep, data = line.rpartition(":")
        name = strip_control(name.strip())
        if not sep or not name or name == "lo":
            continue
        parts = data.split()
        if len(parts) < 9:
            continue
        rx = _counter(parts[0])
        tx = _counter(parts[8])
        if rx is None or tx is None:
            continue
        interfaces[name] = NetCounters(rx_bytes=rx, tx_bytes=tx)
    return interfaces


def parse_uptime(lines: Iterable[str]) -> float | None:
    """Seconds since boot from /proc/uptime."""
    for line in lines:
        parts = line.split()
        if parts:
            return _number(parts[0])
    return None


def parse_procs(lines: Iterable[str]) -> int | None:
    """The process count the loop printed."""
    for line in lines:
        text = line.strip()
        if text:
            return _counter(text)
    return None


_DF_ROW = re.compile(
    r"^(?P<fs>.+?)\s+(?P<size>\d+)\s+(?P<used>\d+)\s+(?P<avail>\d+)\s+(?:\d+%|-)\s+(?P<mount>/.*)$"
)


def parse_df(lines: Iterable[str]) -> list[Filesystem]:
    """Filesystems from ``df -kP`` output (sizes in 1024-byte blocks)."""
    filesystems: list[Filesystem] = []
    for line in lines:
        match = _DF_ROW.match(line.strip())
        if match is None:
            continue  # the header, or a row cut short
        filesystems.append(
            Filesystem(
                filesystem=strip_control(match["fs"]),
                mount=strip_control(match["mount"]),
                size=int(match["size"]) * 1024,
                used=int(match["used"]) * 1024,
                avail=int(match["avail"]) * 1024,
            )
        )
    return filesystems


@dataclass(frozen=True, slots=True)
class MountEntry:
    """What the mount table says about the filesystem mounted on one path."""

    mount: str
    fstype: str
    read_only: bool


# Filesystem types that cannot be written whatever the mount options say.
READ_ONLY_FSTYPES = frozenset(("squashfs", "iso9660", "cramfs", "erofs", "romfs"))
# The kernel writes space, tab, newline and backslash in /proc/mounts as
# three-digit octal escapes (\040 for a space).
_MOUNT_ESCAPE = re.compile(r"\\([0-3][0-7]{2})")


def unescape_mount_field(text: str) -> str:
    """A /proc/mounts field with its octal escapes (``\\040``) decoded."""
    if "\\" not in text:
        return text
    return _MOUNT_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), text)


def is_read_only(options: str, fstype: str = "") -> bool:
    """Whether mount options (``rw,relatime,...``) or the type make a mount read-only."""
    return "ro" in options.split(",") or fstype in READ_ONLY_FSTYPES


def parse_mounts(lines: Iterable[str]) -> dict[str, MountEntry]:
    """Mount point -> its top mount, from /proc/mounts lines.

    A path mounted over twice is listed twice, the later mount last: the
    last line wins, as ``df`` shows the top mount. Lines with fewer than
    four fields are skipped; a line cut short after the options (a long
    overlay line bounded by the stream) still counts, since ``ro``/``rw``
    always comes first among the options.
    """
    mounts: dict[str, MountEntry] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        mount = strip_control(unescape_mount_field(parts[1]))
        if not mount.startswith("/"):
            continue
        fstype = strip_control(unescape_mount_field(parts[2]))
        mounts[mount] = MountEntry(mount, fstype, is_read_only(parts[3], fstype))
    return mounts


def mark_mounts(
    filesystems: Iterable[Filesystem], mounts: Mapping[str, MountEntry]
) -> list[Filesystem]:
    """``filesystems`` with type and read-only mark from the mount table, by mount point.

    Filesystems absent from ``mounts`` (a host without /proc/mounts) are
    kept as they are: unknown type, not read-only.
    """
    marked: list[Filesystem] = []
    for fs in filesystems:
        entry = mounts.get(fs.mount)
        if entry is not None:
            fs = replace(fs, fstype=entry.fstype, read_only=entry.read_only)
        marked.append(fs)
    return marked


def parse_frame(
    sections: Frame | Mapping[str, Sequence[str]],
    host: str,
    time: float,
    include_stacked: bool = False,
) -> RawSample:
    """All counters of one frame; absent sections leave their values empty."""
    if isinstance(sections, Frame):
        sections = sections.sections
    empty: Sequence[str] = ()
    df_lines = sections.get("df")
    filesystems = None
    if df_lines is not None:
        filesystems = mark_mounts(parse_df(df_lines), parse_mounts(sections.get("mounts", empty)))
    return RawSample(
        host=host,
        time=time,
        cpu=parse_cpu(sections.get("stat", empty)),
        memory=parse_meminfo(sections.get("meminfo", empty)),
        load=parse_loadavg(sections.get("loadavg", empty)),
        disks=parse_diskstats(sections.get("diskstats", empty), include_stacked),
        net=parse_net_dev(sections.get("net_dev", empty)),
        uptime=parse_uptime(sections.get("uptime", empty)),
        procs=parse_procs(sections.get("procs", empty)),
        filesystems=filesystems,
    )
