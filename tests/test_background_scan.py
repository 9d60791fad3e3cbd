"""The /proc/*/fd walk done by a forked child gives what the walk in this process gives, and
falls back to that walk whenever the child cannot deliver."""

from __future__ import annotations

import os
import socket
import sys
import threading
from array import array
from collections.abc import Collection, Iterator
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


def _holders(owners: background_scan.Owners) -> list[tuple[int, ...]]:
    return [owners.groups[number] for number in owners.index]


def test_child_names_this_process_not_itself(held_sockets: list[socket.socket]) -> None:
    with background_scan.started(PROC) as pending:
        child = pending._pid
        owners = pending.owners(array("Q", map(_inode, held_sockets)))
    assert child is not None, "expected the walk to run in a child here"
    me = os.getpid()
    # The child holds copies of all our descriptors, and must not count as their owner.
    assert _holders(owners) == [(me,)] * len(held_sockets)
    assert child not in owners.scan.open_fds
    assert owners.scan.open_fds[me] >= len(held_sockets)


def test_same_answer_as_the_walk_in_this_process(held_sockets: list[socket.socket]) -> None:
    mine = array("Q", map(_inode, held_sockets))
    with background_scan.started(PROC) as pending:
        from_child = pending.owners(mine)
    here = procfs.scan_fds(PROC)
    assert _holders(from_child) == [here.pids_by_inode[inode] for inode in mine]
    assert from_child.scan.forbidden == here.forbidden


def test_a_failing_child_means_the_walk_runs_here(
    monkeypatch: pytest.MonkeyPatch, held_sockets: list[socket.socket]
) -> None:
    parent = os.getpid()
    real_scan = procfs.scan_fds

    def fails_in_the_child(proc_root: Path, *, skip_pids: Collection[int] = ()) -> FdScan:
        if os.getpid() != parent:
            raise OSError("simulated failure in the child")
        return real_scan(proc_root, skip_pids=skip_pids)

    monkeypatch.setattr(background_scan, "scan_fds", fails_in_the_child)
    with background_scan.started(PROC) as pending:
        assert pending._pid is not None
        owners = pending.owners(array("Q", [_inode(held_sockets[0])]))
        assert pending._pid is None  # the failed child was reaped
    assert _holders(owners) == [(parent,)]


def test_no_child_while_other_threads_run(held_sockets: list[socket.socket]) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with background_scan.started(PROC) as pending:
            assert pending._pid is None  # forking now could copy a lock held by the other
            owners = pending.owners(array("Q", [_inode(held_sockets[0])]))
    finally:
        stop.set()
        other.join()
    assert _holders(owners) == [(os.getpid(),)]


def test_an_uncollected_child_is_stopped_and_reaped() -> None:
    with background_scan.started(PROC) as pending:
        child = pending._pid
        assert child is not None and pending._question is not None
    assert pending._question is None and pending._pipe is None  # both pipes closed
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)


def test_owners_number_each_holder_tuple_once() -> None:
    scan = FdScan(
        pids_by_inode={10: (1,), 11: (1,), 12: (2, 3), 13: (4,), 2**40: (1,)},
        open_fds={1: 3, 2: 1, 3: 1, 4: 7},
        scanned=4,
        vanished=1,
        forbidden=2,
    )
    owners = background_scan.owners_from(scan, array("Q", [12, 2**40, 99, 0, 10, 13, 11]))
    assert _holders(owners) == [(2, 3), (1,), (), (), (1,), (4,), (1,)]
    assert sorted(owners.groups) == [(), (1,), (2, 3), (4,)]  # each once
    assert owners.scan == FdScan(open_fds=scan.open_fds, scanned=4, vanished=1, forbidden=2)


def test_owners_asked_of_the_child_match_a_walk_here(held_sockets: list[socket.socket]) -> None:
    mine = [_inode(sock) for sock in held_sockets]
    unknown = max(procfs.scan_fds(PROC).pids_by_inode, default=0) + 12_345
    asked = array("Q", [mine[2], 0, unknown, *mine])
    with background_scan.started(PROC) as pending:
        assert pending._pid is not None
        owners = pending.owners(asked)
    assert len(owners.index) == len(asked)
    holders = _holders(owners)
    me = os.getpid()
    # In the order asked: the server socket, inode 0 (no owner), an inode nobody holds, then
    # each of ours; this process holds them, not the child.
    assert holders == [(me,), (), (), *[(me,)] * len(mine)]
    assert owners.groups[0] == ()
    assert owners.scan.pids_by_inode == {}  # the map stayed in the child
    assert owners.scan.open_fds[me] >= len(held_sockets)
    here = background_scan.owners_from(procfs.scan_fds(PROC), asked)
    assert _holders(here) == holders
