"""Read-only mounts on this machine, seen through the remote loop (real sshd) and psutil.

Real tmpfs mounts are made in a temporary directory (root needed): one
filled and remounted read-only, one filled and left writable, and two paths
mounted twice (read-only over writable, and the reverse). Paths have spaces,
which /proc/mounts escapes as ``\\040``. Every mount is undone in a finally.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from itop_tui.domain.metrics import Sample, SampleBuilder
from itop_tui.domain.models import Host
from itop_tui.domain.procfs import Filesystem
from itop_tui.services.metrics_collector import Collector, RemoteCollector, local_filesystems
from itop_tui.services.transport_pool import TransportPool
from itop_tui.settings import Settings

pytestmark = pytest.mark.integration

TESTHOST = Host(name="testhost", ssh_alias="testhost")
INTERVAL = 0.5
SOURCE = "itop-test-ro"  # the device name of every mount made here, to spot leftovers


@pytest.fixture
async def pool(trusted_settings: Settings) -> AsyncIterator[TransportPool]:
    transport_pool = TransportPool(trusted_settings)
    yield transport_pool
    await transport_pool.close()


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def _umount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # Busy (another process looking at it): detach now, freed when unused.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A 1 MiB tmpfs on ``path`` (created if missing) for the block's duration."""
    path.mkdir(exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"{options},size=1m", SOURCE, str(path))
    if done.returncode != 0:
        raise OSError(f"mount tmpfs on {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _umount(path)


def fill(path: Path) -> None:
    """Write into ``path`` until its filesystem is full."""
    with (path / "fill").open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise


def remount_read_only(path: Path) -> None:
    done = _mount("-o", "remount,ro", str(path))
    if done.returncode != 0:
        raise OSError(f"remount {path} read-only: {done.stderr.strip()}")


@pytest.fixture
def mount_dir(tmp_path: Path) -> Path:
    """A directory to mount in, once mounting is known to work here."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount are missing: install util-linux (mount package)")
    probe = tmp_path / "probe"
    probe.mkdir()
    done = _mount("-t", "tmpfs", "-o", "ro,size=1m", SOURCE, str(probe))
    if done.returncode != 0:
        pytest.skip(
            "cannot mount a tmpfs here "
            f"({done.stderr.strip() or done.returncode}): run these tests as root, "
            "or in a container started with --cap-add SYS_ADMIN"
        )
    _umount(probe)
    return tmp_path


@pytest.fixture
def mounts(mount_dir: Path) -> Iterator[dict[str, str]]:
    """The test mounts, name -> mount point as df prints it."""
    with ExitStack() as stack:
        ro_full = stack.enter_context(tmpfs(mount_dir / "ro full", "rw"))
        fill(ro_full)
        remount_read_only(ro_full)
        rw_full = stack.enter_context(tmpfs(mount_dir / "rw full", "rw"))
        fill(rw_full)
        ro_on_rw = stack.enter_context(tmpfs(mount_dir / "ro on rw", "rw"))
        stack.enter_context(tmpfs(ro_on_rw, "ro"))
        rw_on_ro = stack.enter_context(tmpfs(mount_dir / "rw on ro", "ro"))
        stack.enter_context(tmpfs(rw_on_ro, "rw"))
        yield {
            "ro_full": str(ro_full),
            "rw_full": str(rw_full),
            "ro_on_rw": str(ro_on_rw),
            "rw_on_ro": str(rw_on_ro),
        }


async def one_sample(collector: Collector, timeout: float = 60.0) -> Sample:
    """The first sample of a fresh stream (it carries filesystems), then close it."""
    stream = collector.samples()
    try:
        async with asyncio.timeout(timeout):
            raw = await anext(stream)
    finally:
        await stream.aclose()
    assert raw.filesystems is not None, "the first frame has no df section"
    return SampleBuilder().add(raw)


def row(filesystems: list[Filesystem], mount: str) -> Filesystem:
    found = [fs for fs in filesystems if fs.mount == mount]
    assert found, f"{mount!r} not among {[fs.mount for fs in filesystems]}"
    assert len(found) == 1
    return found[0]


def check_marks(filesystems: list[Filesystem], mounts: dict[str, str]) -> None:
    ro_full = row(filesystems, mounts["ro_full"])
    assert (ro_full.fstype, ro_full.read_only, ro_full.percent) == ("tmpfs", True, 100.0)
    rw_full = row(filesystems, mounts["rw_full"])
    assert (rw_full.fstype, rw_full.read_only, rw_full.percent) == ("tmpfs", False, 100.0)
    # Mounted twice: the top mount is what df measures and what counts.
    assert row(filesystems, mounts["ro_on_rw"]).read_only
    assert not row(filesystems, mounts["rw_on_ro"]).read_only
    root = row(filesystems, "/")
    assert root.fstype != "" and not root.read_only


async def test_remote_loop_marks_read_only_mounts(
    pool: TransportPool, mounts: dict[str, str]
) -> None:
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL, df_every=1)
    sample = await one_sample(collector)
    check_marks(sample.filesystems, mounts)
    # The full writable mount raises the fullest figure.
    assert sample.fs_max_percent == 100.0
    assert collector.dropped_frames == 0 and collector.garbage_lines == 0


async def test_local_filesystems_mark_the_same_mounts_as_the_remote_loop(
    pool: TransportPool, mounts: dict[str, str]
) -> None:
    local = await asyncio.to_thread(local_filesystems)
    check_marks(local, mounts)
    remote = await one_sample(RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL))
    local_marks = {fs.mount: (fs.fstype, fs.read_only) for fs in local}
    remote_marks = {fs.mount: (fs.fstype, fs.read_only) for fs in remote.filesystems}
    shared = set(local_marks) & set(remote_marks)
    assert set(mounts.values()) <= shared and "/" in shared
    assert {m: local_marks[m] for m in shared} == {m: remote_marks[m] for m in shared}


async def test_a_full_read_only_mount_does_not_raise_the_fullest_figure(
    pool: TransportPool, mount_dir: Path
) -> None:
    collector = RemoteCollector(pool.for_host(TESTHOST), "testhost", INTERVAL, df_every=1)
    with tmpfs(mount_dir / "iso like", "rw") as iso_like:
        fill(iso_like)
        remount_read_only(iso_like)
        sample = await one_sample(collector)
        full = row(sample.filesystems, str(iso_like))
        assert full.read_only and full.percent == 100.0
        others = [fs for fs in sample.filesystems if not fs.read_only and fs.percent is not None]
        assert others, "no writable filesystem reported"
        other_full = [fs.mount for fs in others if fs.percent == 100.0]
        if other_full:
            pytest.skip(f"writable filesystems already full here, cannot tell: {other_full}")
        assert sample.fs_max_percent is not None and sample.fs_max_percent < 100.0
        assert sample.fs_max_percent == max(fs.percent or 0.0 for fs in others)
        # The same mount made writable again counts at once.
        done = _mount("-o", "remount,rw", str(iso_like))
        assert done.returncode == 0, done.stderr
        writable = await one_sample(collector)
        assert not row(writable.filesystems, str(iso_like)).read_only
        assert writable.fs_max_percent == 100.0
