"""The /proc/*/fd walk done by a forked child gives what the walk in this process gives, and
falls back to that walk whenever the child cannot deliver."""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcphealth.sources import background_scan, procfs
from tcphealth.sources.procfs import FdScan

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="walks the live /proc")

PROC = Path("/proc")


@pytest.fixture
def held_sockets() -> Iterator[list[socket.socket]]:
    """A listener, a connected pair and an unconnected socket, held by this process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    idle = socket.socket()
    held = [listener, client, server, idle]
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def _inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def test_child_names_this_process_not_itself(held_sockets: list[socket.socket]) -> None:
    with background_scan.started(PROC) as pending:
        child = pending._pid
        scan = pending.result()
    assert child is not None, "expected the walk to run in a child here"
    me = os.getpid()
    for sock in held_sockets:
        # The child holds copies of all our descriptors, and must not count as their owner.
        assert scan.pids_by_inode[_inode(sock)] == (me,)
    assert child not in scan.open_fds
    assert scan.open_fds[me] >= len(held_sockets)


def test_same_answer_as_the_walk_in_this_process(held_sockets: list[socket.socket]) -> None:
    with background_scan.started(PROC) as pending:
        from_child = pending.result()
    here = procfs.scan_fds(PROC)
    mine = {_inode(sock) for sock in held_sockets}
    assert {i: from_child.pids_by_inode[i] for i in mine} == {
        i: here.pids_by_inode[i] for i in mine
    }
    assert from_child.forbidden == here.forbidden


def test_a_failing_child_means_the_walk_runs_here(
    monkeypatch: pytest.MonkeyPatch, held_sockets: list[socket.socket]
) -> None:
    parent = os.getpid()
    real_scan = procfs.scan_fds

    def fails_in_the_child(proc_root: Path, *, skip_pid: int | None = None) -> FdScan:
        if os.getpid() != parent:
            raise OSError("simulated failure in the child")
        return real_scan(proc_root, skip_pid=skip_pid)

    monkeypatch.setattr(background_scan, "scan_fds", fails_in_the_child)
    with background_scan.started(PROC) as pending:
        assert pending._pid is not None
        scan = pending.result()
    assert scan.pids_by_inode[_inode(held_sockets[0])] == (parent,)


def test_no_child_while_other_threads_run(held_sockets: list[socket.socket]) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with background_scan.started(PROC) as pending:
            assert pending._pid is None  # forking now could copy a lock held by the other
            scan = pending.result()
    finally:
        stop.set()
        other.join()
    assert scan.pids_by_inode[_inode(held_sockets[0])] == (os.getpid(),)


def test_an_uncollected_child_is_stopped_and_reaped() -> None:
    with background_scan.started(PROC) as pending:
        child = pending._pid
        assert child is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)


def test_the_transfer_loses_nothing() -> None:
    scan = FdScan(
        pids_by_inode={10: (1,), 11: (1,), 12: (2, 3), 13: (4,), 2**40: (1,)},
        open_fds={1: 3, 2: 1, 3: 1, 4: 7},
        scanned=4,
        vanished=1,
        forbidden=2,
    )
    assert background_scan._decode(background_scan._encode(scan)) == scan
