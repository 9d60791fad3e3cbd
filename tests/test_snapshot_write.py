"""Writing files: only with ``-o``; a temporary file renamed into place, so a failed run never
leaves half a snapshot, never truncates the previous one and leaves no temporary file; a
device or a pipe is written into, never replaced.

The failures are real where they can be: a tmpfs of 64 KiB that fills up, /dev/full, a named
pipe nobody reads; the writer raising half-way is simulated.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.model import Process
from tcphealth.sources.snapshot_file import read_snapshot, snapshot_to_json, write_snapshot
from tests.scenario_helpers import leak_snapshot, snap, sock

REPO = Path(__file__).resolve().parent.parent
SMALL = REPO / "fixtures" / "healthy.json"  # 12 KB
LARGE = REPO / "fixtures" / "time-wait-port-exhaustion.json"  # 280 KB
OLD = '{"the": "previous snapshot"}\n'


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_only_snapshot_with_o_writes_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for command, options in (
        ([], []),
        (["check"], []),
        (["sockets"], []),
        (["snapshot"], []),
        ([], ["--format", "json", "--sockets"]),
    ):
        result = run(*command, "--from", SMALL, *options)
        assert result.exit_code in (0, 1, 2), result.stderr
    assert listing(work) == []  # nothing written anywhere but stdout
    assert run("snapshot", "--from", SMALL, "-o", "out.json").exit_code == 0
    assert listing(work) == ["out.json"]
    assert (work / "out.json").read_text() == SMALL.read_text()


def test_a_successful_write_replaces_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    target.write_text(OLD)
    assert run("snapshot", "--from", LARGE, "-o", target).exit_code == 0
    assert listing(tmp_path) == ["snap.json"]
    assert target.read_text() == LARGE.read_text()
    # Readable by its owner only: command lines can hold secrets.
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["missing.json", "empty.json", "broken.json"])
def test_unreadable_input_leaves_the_old_snapshot_alone(tmp_path: Path, bad: str) -> None:
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "broken.json").write_text('{"format": "tcphealth.snapshot", "version": 1, ')
    target = tmp_path / "snap.json"
    target.write_text(OLD)
    before = listing(tmp_path)
    result = run("snapshot", "--from", tmp_path / bad, "-o", target)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcphealth: {tmp_path / bad}")
    assert target.read_text() == OLD
    assert listing(tmp_path) == before


class _FailingHalfway:
    """A file object that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> _FailingHalfway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def test_a_writer_failing_halfway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    half_written: list[int] = []

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        half_written.append(fd)
        return _FailingHalfway(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr("tcphealth.sources.snapshot_file.os.fdopen", fdopen)
    target = tmp_path / "snap.json"
    target.write_text(OLD)
    result = run("snapshot", "--from", LARGE, "-o", target)
    assert half_written  # the failure happened in the middle of the write
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: cannot write {target}: No space left on device\n"
    assert target.read_text() == OLD
    assert listing(tmp_path) == ["snap.json"]


def test_an_interrupted_write_cleans_up_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C (or any BaseException) between the write and the rename."""

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("tcphealth.sources.snapshot_file.os.replace", interrupted)
    target = tmp_path / "snap.json"
    target.write_text(OLD)
    with pytest.raises(KeyboardInterrupt):
        write_snapshot(leak_snapshot(), target)
    assert target.read_text() == OLD
    assert listing(tmp_path) == ["snap.json"]


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 64 KiB, to fill up; unmounted in the end."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=30)


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tiny_tmpfs: Path) -> None:
    target = tiny_tmpfs / "snap.json"
    target.write_text(SMALL.read_text())
    result = run("snapshot", "--from", LARGE, "-o", target)  # 280 KB into 64 KiB
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: cannot write {target}: No space left on device\n"
    assert target.read_text() == SMALL.read_text()
    assert listing(tiny_tmpfs) == ["snap.json"]
    # And when it fits, it is written.
    assert run("snapshot", "--from", SMALL, "-o", tiny_tmpfs / "new.json").exit_code == 0
    assert listing(tiny_tmpfs) == ["new.json", "snap.json"]


def test_dev_full_is_written_into_and_stays_a_device() -> None:
    result = run("snapshot", "--from", SMALL, "-o", "/dev/full")
    assert result.exit_code == 3
    assert result.stderr == "tcphealth: cannot write /dev/full: No space left on device\n"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_device_node_is_written_into_never_renamed_over(tmp_path: Path) -> None:
    """The bug: as root, -o /dev/null renamed the temporary file over the device node.
    Shown on a null device made here, not on the system's."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make a device node here")
    result = run("snapshot", "--from", SMALL, "-o", node)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(os.stat(node).st_mode)
    assert listing(tmp_path) == ["null"]


def test_a_named_pipe_is_written_into_or_refused_at_once(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    alone = run("snapshot", "--from", SMALL, "-o", pipe)
    assert (alone.exit_code, alone.stderr) == (
        3,
        f"tcphealth: cannot write {pipe}: a named pipe that nobody reads\n",
    )
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    received: list[bytes] = []
    reader_fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there from now on
    os.set_blocking(reader_fd, True)

    def read_all() -> None:
        with os.fdopen(reader_fd, "rb") as reader:
            received.append(reader.read())

    thread = threading.Thread(target=read_all, daemon=True)
    try:
        result = run("snapshot", "--from", SMALL, "-o", pipe)
        thread.start()
    finally:
        thread.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert received == [SMALL.read_bytes()]
    assert listing(tmp_path) == ["pipe"]


def test_a_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    """A link planted where the snapshot goes (/tmp/x.json -> /etc/passwd) must not make root
    overwrite its target: the link itself is replaced."""
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    link = tmp_path / "snap.json"
    link.symlink_to(precious)
    assert run("snapshot", "--from", SMALL, "-o", link).exit_code == 0
    assert precious.read_text() == "keep me\n"
    assert not link.is_symlink() and link.read_text() == SMALL.read_text()


def test_names_that_are_not_unicode_are_written_and_read_back_identical(tmp_path: Path) -> None:
    """A lone surrogate (a byte that was not UTF-8, as Python spells it) made the writer raise
    UnicodeEncodeError; it is written as a JSON escape."""
    snapshot = snap(
        [sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 5)],
        [Process(pid=5, name="bad\udcff", cmdline=("x\udc80", "é"))],
    )
    target = tmp_path / "snap.json"
    write_snapshot(snapshot, target)
    assert read_snapshot(target) == snapshot
    assert "\\udcff" in target.read_text(encoding="utf-8")
    assert snapshot_to_json(snapshot).encode("utf-8")  # stdout can take it too
    result = run("snapshot", "--from", target)
    assert result.exit_code == 0 and json.loads(result.stdout)["snapshot"]["processes"][0][
        "name"
    ] == ("bad\udcff")
