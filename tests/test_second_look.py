"""The second look for sockets opened while the /proc/*/fd walk ran (procfs.second_look), over
a made-up /proc tree whose fd links point at socket inodes as the kernel's do."""

from __future__ import annotations

import os
from pathlib import Path

from tcphealth.model import OwnerSource, Socket
from tcphealth.sources import procfs
from tests.builders import sock


def proc_tree(tmp_path: Path, holdings: dict[int, list[int]]) -> Path:
    for pid, inodes in holdings.items():
        fd_dir = tmp_path / str(pid) / "fd"
        fd_dir.mkdir(parents=True)
        for number, inode in enumerate(inodes, start=3):
            os.symlink(f"socket:[{inode}]", fd_dir / str(number))
        os.symlink("/dev/null", fd_dir / "0")  # not a socket: skipped
    return tmp_path


def scan_of(open_fds: dict[int, int]) -> procfs.FdScan:
    return procfs.FdScan(open_fds=dict(open_fds), scanned=len(open_fds))


LISTENER = sock("LISTEN", "10.0.0.5:8000", pids=(123,), inode=10)
CLIENT = sock("ESTAB", "10.0.0.5:41000", "10.0.0.9:5432", pids=(77,), inode=20)


def unseen(state: str, local: str, remote: str, inode: int) -> Socket:
    return sock(state, local, remote, inode=inode, owner=OwnerSource.UNSEEN)


def test_an_accepted_connection_is_found_at_its_listeners_process(tmp_path: Path) -> None:
    root = proc_tree(tmp_path, {123: [10, 555], 77: [20]})
    late = unseen("CLOSE-WAIT", "10.0.0.5:8000", "10.0.0.7:50000", 555)
    sockets, still_unseen = procfs.second_look(
        [LISTENER, CLIENT, late], scan_of({123: 2, 77: 1}), root
    )
    assert still_unseen == 0
    assert (sockets[2].pids, sockets[2].owner_source) == ((123,), OwnerSource.FD)
    assert sockets[:2] == [LISTENER, CLIENT]


def test_a_client_connecting_again_is_found_at_the_process_of_its_other_connections(
    tmp_path: Path,
) -> None:
    root = proc_tree(tmp_path, {123: [10], 77: [20, 21]})
    late = unseen("ESTAB", "10.0.0.5:41001", "10.0.0.9:5432", 21)
    sockets, still_unseen = procfs.second_look(
        [LISTENER, CLIENT, late], scan_of({123: 1, 77: 2}), root
    )
    assert (still_unseen, sockets[2].pids) == (0, (77,))


def test_a_socket_nobody_likely_holds_stays_unseen(tmp_path: Path) -> None:
    root = proc_tree(tmp_path, {123: [10, 555], 77: [20]})
    stranger = unseen("ESTAB", "10.0.0.5:42000", "192.0.2.1:443", 555)
    sockets, still_unseen = procfs.second_look(
        [LISTENER, CLIENT, stranger], scan_of({123: 2, 77: 1}), root
    )
    assert still_unseen == 1
    assert sockets[2].owner_source is OwnerSource.UNSEEN


def test_candidates_with_too_many_descriptors_are_not_read_again(tmp_path: Path) -> None:
    root = proc_tree(tmp_path, {123: [10, 555]})
    late = unseen("CLOSE-WAIT", "10.0.0.5:8000", "10.0.0.7:50000", 555)
    budget = procfs.SECOND_LOOK_FD_BUDGET
    sockets, still_unseen = procfs.second_look([LISTENER, late], scan_of({123: budget + 1}), root)
    assert still_unseen == 1
    assert sockets[1].owner_source is OwnerSource.UNSEEN


def test_a_candidate_that_exited_meanwhile_is_skipped(tmp_path: Path) -> None:
    late = unseen("CLOSE-WAIT", "10.0.0.5:8000", "10.0.0.7:50000", 555)
    sockets, still_unseen = procfs.second_look([LISTENER, late], scan_of({123: 2}), tmp_path)
    assert sockets[1].owner_source is OwnerSource.UNSEEN
    assert still_unseen == 1


def test_the_budget_goes_to_the_smallest_candidates_first(tmp_path: Path) -> None:
    root = proc_tree(tmp_path, {123: [10, 555], 900: [30, 556]})
    busy = sock("LISTEN", "10.0.0.5:9000", pids=(900,), inode=30)
    late_small = unseen("CLOSE-WAIT", "10.0.0.5:8000", "10.0.0.7:50000", 555)
    late_busy = unseen("CLOSE-WAIT", "10.0.0.5:9000", "10.0.0.7:50001", 556)
    scan = scan_of({123: 2, 900: procfs.SECOND_LOOK_FD_BUDGET})
    sockets, still_unseen = procfs.second_look([LISTENER, busy, late_small, late_busy], scan, root)
    assert still_unseen == 1
    assert (sockets[2].pids, sockets[3].pids) == ((123,), ())


def test_the_budget_grows_with_the_number_of_unseen_sockets(tmp_path: Path) -> None:
    # A listener's process holding more descriptors than one unseen socket is worth reading
    # again for: with one late socket it is not read, with enough of them it is.
    per_socket = procfs.SECOND_LOOK_FDS_PER_SOCKET
    held = per_socket + 1
    late_inodes = [555, 556, 557]
    root = proc_tree(tmp_path, {123: [10, *late_inodes]})
    scan = scan_of({123: held})
    late = [
        unseen("CLOSE-WAIT", "10.0.0.5:8000", f"10.0.0.7:{50000 + n}", inode)
        for n, inode in enumerate(late_inodes)
    ]

    sockets, still_unseen = procfs.second_look([LISTENER, late[0]], scan, root)
    assert still_unseen == 1
    assert sockets[1].owner_source is OwnerSource.UNSEEN

    sockets, still_unseen = procfs.second_look([LISTENER, *late[:2]], scan, root)
    assert 2 * per_socket >= held  # two unseen sockets earn the read
    assert still_unseen == 0
    assert [(s.pids, s.owner_source) for s in sockets[1:]] == [((123,), OwnerSource.FD)] * 2
