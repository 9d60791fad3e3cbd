"""The descriptor tables kept across collections (tcphealth.sources.fd_cache), on the live
/proc with real processes: a table is read again exactly when its process may have changed,
and the owners it gives are those a full walk gives."""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import signal
import subprocess
import sys
from array import array
from dataclasses import replace
from pathlib import Path

import pytest

from tcphealth.sources import background_scan, fd_cache, fd_columns, procfs
from tests.fd_holder import holder

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not fd_cache.supported(),
    reason="needs a Linux (6.2+) /proc that counts descriptors in stat()",
)

PROC = Path("/proc")


def walk(
    previous: fd_cache.Learned, inodes: list[int], *, refresh: bool = False
) -> tuple[fd_cache.CachedWalk, procfs.FdScan]:
    """A collection's walk after ``previous``; unless ``refresh``, with no table due for its
    refresh (which would read a process again whatever it did, a pid's luck)."""
    if not refresh:
        previous = fresh(previous)
    done = fd_cache.CachedWalk(previous, always_pids=(os.getpid(),))
    done.look()
    return done, done.place(inodes)


def fresh(learned: fd_cache.Learned) -> fd_cache.Learned:
    tables = {
        pid: replace(table, walked=learned.collections) for pid, table in learned.tables.items()
    }
    return replace(learned, tables=tables)


def full_walk_holders(inodes: list[int]) -> list[tuple[int, ...]]:
    scan = procfs.scan_fds(PROC)
    return [scan.pids_by_inode.get(inode, ()) for inode in inodes]


def test_this_kernel_counts_descriptors_in_stat() -> None:
    # The premise of the cache, checked on this process: st_size is the number of open fds.
    fds = len(os.listdir("/proc/self/fd")) - 1  # less the one listdir had open
    assert os.stat("/proc/self/fd").st_size == fds


def test_an_unchanged_process_is_not_read_again() -> None:
    with holder("th23-still", 3) as still:
        first, _ = walk(fd_cache.Learned(), still.inodes)
        assert still.pid in first.walked
        second, scan = walk(first.learned(), still.inodes)
        assert still.pid not in second.walked  # one stat, no readlink
        assert second.tables[still.pid].walked == first.collection  # kept, not read again
        assert [scan.pids_by_inode[inode] for inode in still.inodes] == full_walk_holders(
            still.inodes
        )
        assert scan.open_fds[still.pid] == still.fds - 1  # less its own listdir's


def test_a_process_with_more_or_fewer_descriptors_is_read_again() -> None:
    with holder("th23-grows", 2) as grows, holder("th23-shrinks", 3) as shrinks:
        first, _ = walk(fd_cache.Learned(), grows.inodes + shrinks.inodes)
        grows.tell("open 2")
        shrinks.tell("file")  # two sockets closed, two files opened: the same count
        shrinks.tell("close 1")  # the client end closed: one fewer
        asked = grows.inodes + shrinks.inodes
        second, scan = walk(first.learned(), asked)
        assert {grows.pid, shrinks.pid} <= second.walked
        assert [scan.pids_by_inode.get(inode, ()) for inode in asked] == full_walk_holders(asked)
        assert all(scan.pids_by_inode[inode] == (grows.pid,) for inode in grows.inodes)


def test_new_sockets_at_the_same_count_are_found_by_reading_only_their_process() -> None:
    with holder("th23-swaps", 3) as swaps, holder("th23-bystand", 3) as bystander:
        first, _ = walk(fd_cache.Learned(), swaps.inodes + bystander.inodes)
        before = set(swaps.inodes)
        ident = os.stat(f"/proc/{swaps.pid}/fd")
        swaps.tell("swap")
        after = os.stat(f"/proc/{swaps.pid}/fd")
        # The premise of this test: stat() cannot tell the swap happened.
        assert (after.st_ino, after.st_size) == (ident.st_ino, ident.st_size)
        new = [inode for inode in swaps.inodes if inode not in before]
        assert len(new) == 2
        asked = swaps.inodes + bystander.inodes
        second, scan = walk(first.learned(), asked)
        # Read again because its new sockets were unplaced and two of its old ones are gone
        # from the dump; the unchanged process beside it is not read.
        assert swaps.pid in second.walked
        assert bystander.pid not in second.walked
        assert all(scan.pids_by_inode[inode] == (swaps.pid,) for inode in swaps.inodes)
        assert all(scan.pids_by_inode[inode] == (bystander.pid,) for inode in bystander.inodes)
        assert second.learned().unplaceable == frozenset()


def test_an_inode_no_walk_can_place_forces_only_one_full_walk() -> None:
    with holder("th23-quiet", 1) as quiet:
        nobody = max(procfs.scan_fds(PROC).pids_by_inode) + 987_654
        first, _ = walk(fd_cache.Learned(), quiet.inodes)
        second, scan = walk(first.learned(), [*quiet.inodes, nobody])
        assert quiet.pid in second.walked  # the full walk the unplaced inode forced
        assert nobody not in scan.pids_by_inode
        assert second.learned().unplaceable == {nobody}
        third, _ = walk(second.learned(), [*quiet.inodes, nobody])
        assert quiet.pid not in third.walked  # known unplaceable: no walk again
        assert third.learned().unplaceable == {nobody}
        fourth, _ = walk(third.learned(), quiet.inodes)  # gone from the dump: forgotten
        assert fourth.learned().unplaceable == frozenset()


def test_every_table_is_read_again_within_the_refresh_bound() -> None:
    with holder("th23-idle", 1) as idle:
        learned = fd_cache.Learned()
        reads = []
        for number in range(2 * fd_cache.REFRESH_EVERY + 1):
            done, _ = walk(learned, idle.inodes, refresh=True)
            learned = done.learned()
            if idle.pid in done.walked:
                reads.append(number)
        # The first collection, then once per REFRESH_EVERY (its first one sooner, by pid).
        assert reads[0] == 0
        gaps = [later - earlier for earlier, later in itertools.pairwise(reads)]
        assert gaps and all(gap <= fd_cache.REFRESH_EVERY for gap in gaps), reads
        assert len(reads) >= 3


def test_the_scan_in_a_child_uses_and_returns_the_kept_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fd_cache, "_enabled", True)
    monkeypatch.setattr(fd_cache, "_learned", fd_cache.Learned())
    with holder("th23-child", 2) as held:
        asked = array("Q", held.inodes)
        for collection in (1, 2):
            with background_scan.started(PROC) as pending:
                assert pending._pid is not None
                owners = pending.owners(asked)
            assert [owners.groups[number] for number in owners.index] == [(held.pid,)] * len(
                held.inodes
            )
            kept = fd_cache.current()
            assert kept is not None and kept.collections == collection
            assert held.pid in kept.tables


def test_in_place_the_walk_forks_nothing_and_answers_as_the_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """serve's walk of kept tables (background_scan.walked_in_place): no child; the tables
    looked at when the walk starts, before the dump, and the child's answer and delta."""
    monkeypatch.setattr(fd_cache, "_enabled", True)
    monkeypatch.setattr(fd_cache, "_learned", fd_cache.Learned())
    with holder("th23-inplace", 2) as held:
        asked = array("Q", [*held.inodes, 0])
        with background_scan.started(PROC, answer_with=fd_columns.owners_at_once) as pending:
            assert pending._pid is not None  # the first collection: a child, as before
            from_child = pending.owners(asked)
        kept_by_child = fd_cache.current()
        assert kept_by_child is not None
        # No table due for its refresh (a pid's luck): a table read at the look is not read
        # again for a socket opened after it, in place as in the child.
        monkeypatch.setattr(fd_cache, "_learned", fresh(kept_by_child))
        monkeypatch.setattr(background_scan, "_in_place", True)
        forks: list[int] = []
        real_fork = os.fork

        def counted_fork() -> int:
            forks.append(1)
            return real_fork()

        monkeypatch.setattr(os, "fork", counted_fork)
        with background_scan.started(PROC, answer_with=fd_columns.owners_at_once) as pending:
            assert pending._pid is None and pending._walk is not None
            assert held.pid in pending._walk.tables  # looked at already, before any dump
            # A connection opened after the look, before the owners are asked for: placed by
            # reading again the table whose count changed, as the child does.
            before = list(held.inodes)
            held.tell("open 1")
            opened = sorted(set(held.inodes) - set(before))
            assert len(opened) == 2  # both ends of the new connection
            in_place = pending.owners(array("Q", [*asked, *opened]))
        assert forks == []
        holders = [in_place.groups[number] for number in in_place.index]
        assert holders == [(held.pid,)] * len(before) + [()] + [(held.pid,)] * 2
        assert holders[: len(asked)] == [from_child.groups[n] for n in from_child.index]
        assert in_place.learned is not None and in_place.learned.base == 1
        assert held.pid in in_place.learned.read  # its count changed: read again
        kept = fd_cache.current()
        assert kept_by_child.collections == 1
        assert kept is not None and kept.collections == 2
        assert sorted(kept.tables[held.pid].inodes) == sorted([*before, *opened])


def test_in_place_without_kept_tables_the_walk_still_runs_in_a_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background_scan, "_in_place", True)
    assert fd_cache.current() is None  # not enabled: a full walk, its map kept in the child
    with background_scan.started(PROC) as pending:
        assert pending._pid is not None and pending._walk is None
        owners = pending.owners(array("Q"))
    assert owners.learned is None


def test_without_enable_nothing_is_kept() -> None:
    assert not fd_cache.enabled()  # only tcphealth serve enables it
    assert fd_cache.current() is None
    with background_scan.started(PROC) as pending:
        owners = pending.owners(array("Q"))
    assert owners.learned is None


def test_enable_refuses_a_kernel_that_does_not_count_descriptors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fd_cache, "_enabled", False)
    monkeypatch.setattr(fd_cache, "supported", lambda proc_root=PROC: False)
    assert fd_cache.enable() is False
    assert fd_cache.current() is None


def test_a_delta_carries_only_the_tables_read_and_rebuilds_the_whole_from_its_base(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with holder("th23-delta", 2) as still, holder("th23-moves", 1) as moves:
        first, _ = walk(fd_cache.Learned(), still.inodes + moves.inodes)
        base = fresh(first.learned())
        moves.tell("open 1")
        second = fd_cache.CachedWalk(base, always_pids=(os.getpid(),))
        second.look()
        second.place(still.inodes + moves.inodes)
        delta = second.delta()
        assert moves.pid in delta.read and still.pid not in delta.read  # only what was read
        assert still.pid in delta.kept
        # The server holds the same base as the walk did: applying the delta gives it the
        # tables the walk ended with.
        monkeypatch.setattr(fd_cache, "_enabled", True)
        monkeypatch.setattr(fd_cache, "_learned", base)
        fd_cache.adopt(delta)
        kept = fd_cache.current()
        assert kept == second.learned()
        assert fd_cache.handed_back() is delta
        # A delta from another base is not applied onto the wrong tables: nothing is kept,
        # and the next collection walks everything.
        fd_cache.adopt(delta)
        assert fd_cache.current() == fd_cache.Learned()
        assert fd_cache.handed_back() is None


def _both_answers(
    walked: fd_cache.CachedWalk, inodes: list[int]
) -> tuple[background_scan.Owners | None, background_scan.Owners]:
    """The lean path's answer (fd_columns) and place()'s, from two copies of one walk that
    has looked: the same tables, whatever the host's processes did since."""
    from tcphealth.sources import fd_columns

    asked = array("Q", inodes)
    other = copy.deepcopy(walked)
    at_once = fd_columns.owners_at_once(walked, asked)
    by_place = background_scan.owners_from(other.place(asked), asked, other.delta())
    return at_once, by_place


# Holds a pair of sockets on its lowest free descriptors, shares them with a child it forks,
# then opens a listener: in its descriptor table a socket of two holders comes before its
# own. Prints the pair's inode, the listener's and the child's pid; both end within 30 s.
_SHARING = """
import os, socket, time
pair = socket.socketpair()
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
print(os.fstat(pair[0].fileno()).st_ino, os.fstat(listener.fileno()).st_ino, child, flush=True)
time.sleep(30)
"""


def test_the_columns_answer_what_place_answers() -> None:
    with holder("th23-cols-a", 3) as first, holder("th23-cols-b", 2) as second:
        sharing = subprocess.Popen(
            [sys.executable, "-c", _SHARING], stdout=subprocess.PIPE, text=True
        )
        child = None
        try:
            assert sharing.stdout is not None
            shared, alone, child = (int(word) for word in sharing.stdout.readline().split())
            nobody = max(procfs.scan_fds(PROC).pids_by_inode) + 987_654
            asked = [0, *first.inodes, shared, 0, *second.inodes, alone, shared]
            one, _ = walk(fd_cache.Learned(), asked)
            # A walk from kept tables, one process read again.
            first.tell("open 1")
            asked = [*asked, *first.inodes[-2:]]
            two = fd_cache.CachedWalk(fresh(one.learned()), always_pids=(os.getpid(),))
            two.look()
            assert first.pid in two.walked and second.pid not in two.walked
            at_once, by_place = _both_answers(two, asked)
            assert at_once is not None
            assert at_once == by_place
            index = dict(zip(asked, at_once.index, strict=True))
            assert at_once.groups[index[shared]] == tuple(sorted((sharing.pid, child)))
            assert at_once.groups[index[alone]] == (sharing.pid,)
            assert at_once.groups[index[first.inodes[0]]] == (first.pid,)
            assert index[0] == 0
            # Groups are numbered in the order their first socket is met (by pid, then as
            # each table lists them): the shared pair's before its holder's own listener.
            assert index[shared] < index[alone]

            # A socket no table holds: the columns read again what place() reads (every
            # process, here) and answer what it answers.
            three = fd_cache.CachedWalk(fresh(one.learned()), always_pids=(os.getpid(),))
            three.look()
            before = set(three.walked)
            answer, by_place = _both_answers(three, [*asked, nobody])
            assert answer == by_place
            assert second.pid in three.walked - before  # read again: a full walk
            assert by_place.learned is not None
            assert by_place.learned.unplaceable == {nobody}
            assert three.unplaceable == frozenset({nobody})
            # Known unplaceable from then on: the columns answer, and keep it so.
            learned = by_place.learned.applied(fresh(one.learned()))
            assert learned is not None
            four = fd_cache.CachedWalk(fresh(learned), always_pids=(os.getpid(),))
            four.look()
            at_once, by_place = _both_answers(four, [*asked, nobody])
            assert at_once is not None and at_once == by_place
            assert at_once.learned is not None
            assert at_once.learned.unplaceable == {nobody}
            # Gone from the dump: forgotten.
            at_once, by_place = _both_answers(four, asked)
            assert at_once is not None and at_once == by_place
            assert at_once.learned is not None
            assert at_once.learned.unplaceable == frozenset()
        finally:
            for pid in (sharing.pid, child):  # by pid: the process this test started, its child
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            sharing.wait()
            if sharing.stdout is not None:
                sharing.stdout.close()
