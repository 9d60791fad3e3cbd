"""The answer of a walk from kept descriptor tables (:class:`.fd_cache.CachedWalk`) counted
with numpy, for the lean path's walk (in the collecting process under ``serve``).

Between two quiet scrapes the walk reads a few tables again and keeps the rest; what is left
is naming the holders of every socket in the dump: :meth:`CachedWalk.place` builds a dict of
every inode the tables hold, :class:`.background_scan._OwnerIndex` numbers its holder tuples
and looks each socket up -- four Python steps per socket, about 0.1 CPU-s at 100,000
sockets (benchmarks/RESULTS.md, session 15). Here the tables' inodes are one array, sorted
once, and the sockets are found in it with one search: the same groups, numbered in the same
order, the same answer, and the same tables handed back.

Where a socket of the dump is held by no table and was not known to be held by none (one
opened since), the same tables are read again as ``place`` reads them -- those that changed or
lost a socket, then every one not read yet -- and the answer is ``place``'s, without its dict
of every inode: in ``tcphealth serve`` the walk runs in the collecting process, where that
dict would be held while the dump is decoded.
"""

from __future__ import annotations

from array import array

import numpy as np
import numpy.typing as npt

from tcphealth.sources import fd_cache
from tcphealth.sources.background_scan import Owners
from tcphealth.sources.procfs import FdScan

_U64 = np.uint64


def _inodes_of(values: array[int]) -> npt.NDArray[np.uint64]:
    if not len(values):
        return np.zeros(0, dtype=_U64)
    return np.frombuffer(values, dtype=np.dtype(values.typecode)).astype(_U64)


def _among(
    values: npt.NDArray[np.uint64], sorted_set: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    """Which of ``values`` are in ``sorted_set`` (sorted, distinct): one binary search each
    (numpy.isin sorts or hashes the set again at every call)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=np.bool_)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    found: npt.NDArray[np.bool_] = sorted_set[at] == values
    return found


_Held = tuple[
    npt.NDArray[np.int64],  # order: positions in crediting order, sorted by inode
    npt.NDArray[np.int64],  # pid_by_inode: the crediting pid of each, in that order
    npt.NDArray[np.int64],  # starts: where each distinct inode begins in that order
    npt.NDArray[np.uint64],  # distinct: the distinct inodes, sorted
    int,  # how many inodes the tables hold in all
]


def _held(walk: fd_cache.CachedWalk) -> _Held:
    """Every table's inodes in one array, in the order place() credits them (by pid, then as
    each table lists them), sorted by inode with that order kept within an inode."""
    pids = sorted(walk.tables)
    tables = [walk.tables[pid] for pid in pids]
    held = (
        np.concatenate([_inodes_of(table.inodes) for table in tables])
        if tables
        else np.zeros(0, dtype=_U64)
    )
    pid_of = np.repeat(
        np.array(pids, dtype=np.int64), [len(table.inodes) for table in tables]
    ).astype(np.int64)
    order = np.argsort(held, kind="stable")
    by_inode, pid_by_inode = held[order], pid_of[order]
    starts = np.flatnonzero(np.r_[True, by_inode[1:] != by_inode[:-1]]) if len(held) else order
    return order, pid_by_inode, starts, by_inode[starts], len(held)


def owners_at_once(walk: fd_cache.CachedWalk, inodes: array[int]) -> Owners:
    """What ``owners_from(walk.place(inodes), inodes, walk.delta())`` answers, for a walk
    that has looked (:meth:`CachedWalk.look`), reading again what ``place`` reads again when
    a socket is held by no table and not known to be unplaceable -- without the dict of every
    inode ``place`` builds (20 MB at 100,000 sockets, held while the dump is decoded when the
    walk runs in the collecting process)."""
    asked = _inodes_of(inodes)
    wanted = np.sort(asked[asked != 0])  # sorted and distinct (np.unique hashes: slower)
    wanted = wanted[np.r_[True, wanted[1:] != wanted[:-1]]] if len(wanted) else wanted
    unplaceable_before = np.sort(np.fromiter(walk.previous.unplaceable, dtype=_U64))
    order, pid_by_inode, starts, distinct, held_count = _held(walk)
    unplaced = wanted[~_among(wanted, distinct) & ~_among(wanted, unplaceable_before)]
    walked_all = False
    if len(unplaced):
        walk._read_again(
            walk._changed() | walk._lost(lambda held: bool(_among(_inodes_of(held), wanted).all()))
        )
        order, pid_by_inode, starts, distinct, held_count = _held(walk)
        unplaced = unplaced[~_among(unplaced, distinct)]
    if len(unplaced):
        walk._read_again(None)
        order, pid_by_inode, starts, distinct, held_count = _held(walk)
        walked_all = True

    # Each distinct inode's holders: one pid (nearly all), or several (a socket shared
    # across a fork) -- those few as tuples, as procfs.credit_holder makes them.
    first_pid = pid_by_inode[starts]
    same = pid_by_inode == np.repeat(first_pid, np.diff(np.r_[starts, held_count]))
    alone = np.logical_and.reduceat(same, starts) if held_count else same
    first_at = order[starts]  # where each inode is first credited
    shared: dict[int, tuple[int, ...]] = {}
    ends = np.r_[starts[1:], held_count]
    for at in np.flatnonzero(~alone).tolist():
        shared[at] = tuple(sorted(set(pid_by_inode[starts[at] : ends[at]].tolist())))

    # Groups numbered as _OwnerIndex numbers them: in the order their first inode was
    # credited, () being 0.
    credited = np.argsort(first_at, kind="stable")  # distinct inodes, in crediting order
    single = alone[credited]
    single_at = np.flatnonzero(single)
    single_pids, first_of_pid = np.unique(first_pid[credited][single_at], return_index=True)
    firsts: list[tuple[int, tuple[int, ...]]] = [
        (at, (pid,))
        for at, pid in zip(single_at[first_of_pid].tolist(), single_pids.tolist(), strict=True)
    ]
    seen: set[tuple[int, ...]] = set()
    for position in np.flatnonzero(~single).tolist():
        holders = shared[int(credited[position])]
        if holders not in seen:
            seen.add(holders)
            firsts.append((position, holders))
    firsts.sort()
    groups: list[tuple[int, ...]] = [(), *(holders for _, holders in firsts)]
    number = {holders: at for at, holders in enumerate(groups)}
    group_of = np.zeros(len(distinct), dtype=np.uint32)
    if len(single_pids):
        numbers_of_pid = np.array([number[(pid,)] for pid in single_pids.tolist()], np.uint32)
        group_of[alone] = numbers_of_pid[np.searchsorted(single_pids, first_pid[alone])]
    for at, holders in shared.items():
        group_of[at] = number[holders]

    where = np.searchsorted(distinct, asked)
    inside = np.minimum(where, max(len(distinct) - 1, 0))
    found = (where < len(distinct)) & (distinct[inside] == asked) if len(distinct) else where < 0
    index = array("I")
    index.frombytes(
        np.where(found, group_of[inside] if len(distinct) else 0, 0).astype(np.uint32).tobytes()
    )

    # What CachedWalk.place and delta leave: the inodes known unplaceable that are still
    # asked for and still held by no table, and the tables read this time keeping only the
    # dump's inodes.
    if walked_all:  # what even a walk of every process could not place
        still = wanted[~_among(wanted, distinct)]
    else:
        still = unplaceable_before[
            _among(unplaceable_before, wanted) & ~_among(unplaceable_before, distinct)
        ]
    unplaceable = frozenset(still.tolist())
    walk.unplaceable = unplaceable
    read = {}
    for pid, table in walk.tables.items():
        if pid in walk.walked:
            mine = _inodes_of(table.inodes)
            dumped = fd_cache._compact(mine[_among(mine, wanted)].tolist())
            read[pid] = fd_cache.Table(table.ident, table.fds, dumped, table.walked)
    kept = tuple(pid for pid in walk.tables if pid not in walk.walked)
    delta = fd_cache.Delta(walk.previous.collections, read, kept, unplaceable)
    scan = FdScan(
        open_fds={pid: table.fds for pid, table in walk.tables.items()},
        scanned=len(walk.tables),
        vanished=len(walk.vanished),
        forbidden=len(walk.forbidden),
    )
    return Owners(scan, groups, index, delta)
