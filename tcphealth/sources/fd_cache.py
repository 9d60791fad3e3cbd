"""Descriptor tables kept from one collection to the next, for a process that collects again
and again (``tcphealth serve``): only the processes whose fd table changed are walked again.

Naming the owners of 300,000 sockets takes a ``readlink`` of every descriptor on the host,
about a second of CPU. Between two scrapes most processes open and close nothing, and since
Linux 6.2 ``stat("/proc/PID/fd").st_size`` is the number of descriptors a process has open, so
one ``stat`` per process tells which tables may have changed. A table is read again when

- its process is new, or its ``/proc/PID/fd`` has another inode (the pid was reused: procfs
  gives each process's directory a fresh inode number) or another descriptor count;
- it is due: each table is read again at least once every :data:`REFRESH_EVERY` collections
  whatever its count (spread over the collections by pid, so no scrape pays for all);
- a socket in the dump is held by no table known (an *unplaced* inode): the processes whose
  count changed since the first look, or whose kept TCP sockets left the dump (one that
  closed a connection and made another keeps its count), are read again; then every process
  still unread this collection if the inode is still unplaced. Inodes even a full walk could
  not place (held by the kernel, or in flight between processes) are remembered and do not
  force the next one.

**The staleness this allows**, and only this: a process that, between two collections, closed
a socket's descriptor *and* opened exactly as many descriptors that are not new TCP sockets
(a file, a pipe, a UDP socket), while the socket itself lives on in another process, is still
named among that socket's holders; and a socket handed to a process that at the same time
closed as many descriptors stays without that holder. A new TCP socket never goes unnoticed
(its inode is unplaced), a closed one leaves the dump, and a count that moved is read again.
Both cases end at the table's next refresh: within :data:`REFRESH_EVERY` collections.

The tables live in the process that keeps collecting (the server); each collection runs in a
forked child that inherits them, walks what it must (in place under ``serve``, see
:func:`.background_scan.walked_in_place`; else in a helper of its own), and hands back what
changed with its result (:func:`current`, :func:`adopt`, :func:`handed_back`). Without
``enable()`` -- every other command -- nothing is kept and each run walks everything, as
before.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tcphealth.sources.procfs import FdScan, _pid_dirs, credit_holder, fd_table

# Every table is read again at least once in this many collections (at serve's default
# --min-interval of 10 s and a 15-30 s scrape interval: within 4-8 minutes).
REFRESH_EVERY = 16

PROC = Path("/proc")


@dataclass(frozen=True)
class Table:
    """One process's descriptors as last read: the identity of its fd directory then
    (inode, descriptor count from ``stat``), the count ``listdir`` gave, its socket inodes,
    and the collection that read it (offset by pid so the refreshes spread out)."""

    ident: tuple[int, int]
    fds: int
    inodes: array[int]
    walked: int


@dataclass(frozen=True)
class Learned:
    """What the walks so far know: ``collections`` made, each process's table, and the inodes
    a full walk could not place."""

    collections: int = 0
    tables: dict[int, Table] = field(default_factory=dict)
    unplaceable: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Delta:
    """What one collection changed in what is kept, as the walk hands it to the collecting
    process (itself, when it walks in place) and that one to the server (each holds the
    tables the collection started from): the tables read again, the pids whose kept table
    stays, and the inodes no walk can place. Between two quiet scrapes a few tables, instead
    of all of them (2.4 MB of inodes at 300,000 sockets, pickled twice at the moment the
    collection's memory peaks)."""

    base: int  # the Learned.collections it follows
    read: dict[int, Table]
    kept: tuple[int, ...]
    unplaceable: frozenset[int]

    def applied(self, previous: Learned) -> Learned | None:
        """``previous`` with this collection's changes; None if it is not the one this delta
        follows (then nothing is kept, and the next collection walks everything)."""
        if previous.collections != self.base:
            return None
        tables = {pid: previous.tables[pid] for pid in self.kept if pid in previous.tables}
        if len(tables) != len(self.kept):
            return None
        tables.update(self.read)
        return Learned(self.base + 1, tables, self.unplaceable)


_enabled = False
_learned = Learned()
_handed: Delta | None = None  # the last delta adopted, for the process that forked this one


def supported(proc_root: Path = PROC) -> bool:
    """Whether this kernel counts a process's descriptors in ``stat("/proc/PID/fd").st_size``
    (Linux 6.2 and later; 0 before). This process always has some open (the stdio, at least
    the directory listing itself), so a size of 0 means the kernel does not count them."""
    try:
        return os.stat(f"{proc_root}/self/fd").st_size > 0
    except OSError:
        return False


def enable() -> bool:
    """Keep tables across collections from now on, if the kernel makes it safe; whether it
    does. Every collection walks everything on a kernel that does not count descriptors."""
    global _enabled
    _enabled = supported()
    return _enabled


def enabled() -> bool:
    return _enabled


def current() -> Learned | None:
    """What is kept, to hand to the process that collects next; None when not enabled."""
    return _learned if _enabled else None


def adopt(change: object) -> None:
    """Keep what a collection (in a child, or here) learnt: a :class:`Delta` from what is kept
    now. Anything else (no answer, or the child's None) leaves what is kept as it was."""
    global _learned, _handed
    if not _enabled or not isinstance(change, Delta):
        return
    applied = change.applied(_learned)
    _learned = applied if applied is not None else Learned()
    _handed = change if applied is not None else None


def handed_back() -> Delta | None:
    """The change the last collection made, for the server that forked the collecting
    process; None when nothing is kept."""
    return _handed if _enabled else None


def _compact(inodes: list[int]) -> array[int]:
    """The inodes in 4 bytes each where they fit (sockfs numbers its inodes with an unsigned
    int, so they always do on Linux), else 8: this is what the server keeps."""
    return array("I" if max(inodes, default=0) < 1 << 32 else "Q", inodes)


def _ident(fd_path: str) -> tuple[int, int]:
    info = os.stat(fd_path)
    return info.st_ino, info.st_size


class CachedWalk:
    """One collection's walk of /proc/*/fd with the kept tables: :meth:`look` before the socket
    table is read (what changed is read again), :meth:`place` once its inodes are known."""

    def __init__(
        self,
        previous: Learned,
        skip_pids: Collection[int] = (),
        always_pids: Collection[int] = (),
        proc_root: Path = PROC,
    ) -> None:
        self.previous = previous
        self.proc_root = proc_root
        self.skip_pids = frozenset(skip_pids)
        # Read every time: the collecting process and the one that forked it, whose fds
        # change with every scrape (the request's connection) and are few.
        self.always_pids = frozenset(always_pids)
        self.collection = previous.collections + 1
        self.tables: dict[int, Table] = {}
        self.walked: set[int] = set()  # pids read this collection
        self.vanished: set[int] = set()
        self.forbidden: set[int] = set()
        self.unplaceable: frozenset[int] | None = None  # known once place() has run
        self._wanted: set[int] = set()  # the inodes place() was asked about

    def _read(self, pid: int, ident: tuple[int, int] | None = None) -> Table | None:
        """Read ``pid``'s table now (counting it vanished or forbidden when that fails)."""
        fd_path = f"{self.proc_root}/{pid}/fd"
        try:
            if ident is None:
                ident = _ident(fd_path)
            count, inodes = fd_table(fd_path)
        except PermissionError:
            self.forbidden.add(pid)
            return None
        except OSError:  # exited, or (live /proc) anything odd about one process
            self.vanished.add(pid)
            return None
        self.walked.add(pid)
        self.vanished.discard(pid)
        known = self.previous.tables.get(pid)
        # A table read now is next due in REFRESH_EVERY collections; a new process's first
        # turn comes sooner by its pid, so that tables read together are not all due together.
        walked = self.collection if known is not None else self.collection - pid % REFRESH_EVERY
        return Table(ident, count, inodes, walked)

    def look(self) -> None:
        """Every process now: its kept table where its fd directory is unchanged and the table
        not due, else read afresh."""
        kept = self.previous.tables
        due = self.collection - REFRESH_EVERY
        for pid in _pid_dirs(self.proc_root):
            if pid in self.skip_pids:
                continue
            table: Table | None = None
            known = kept.get(pid)
            if known is not None and pid not in self.always_pids and known.walked > due:
                try:
                    ident = _ident(f"{self.proc_root}/{pid}/fd")
                except PermissionError:
                    self.forbidden.add(pid)
                    continue
                except OSError:
                    self.vanished.add(pid)
                    continue
                table = known if ident == known.ident else self._read(pid, ident)
            else:
                table = self._read(pid)
            if table is not None:
                self.tables[pid] = table

    def place(self, inodes: Iterable[int]) -> FdScan:
        """The walk's answer about ``inodes`` (the sockets' inodes in the dump; 0 for none).
        Where one is not placed by the tables, the processes that may hold it are read again:
        those whose fd directory changed since :meth:`look`, and those whose table holds a TCP
        socket gone from the dump (a process that closed one connection and opened another
        keeps its count); then, if it is still not placed, every process not read yet."""
        pids_by_inode = self._holders()
        wanted = {inode for inode in inodes if inode}
        self._wanted = wanted
        unplaced = wanted - pids_by_inode.keys() - self.previous.unplaceable
        if unplaced:
            self._read_again(self._changed() | self._lost(wanted.issuperset))
            pids_by_inode = self._holders()
            unplaced -= pids_by_inode.keys()
        if unplaced:
            self._read_again(None)
            pids_by_inode = self._holders()
            # What even a walk of every process could not place does not force the next one.
            self.unplaceable = frozenset(wanted - pids_by_inode.keys())
        else:
            # Those known unplaceable that are still there stay so.
            self.unplaceable = frozenset(
                (wanted & self.previous.unplaceable) - pids_by_inode.keys()
            )
        return FdScan(
            pids_by_inode=pids_by_inode,
            open_fds={pid: table.fds for pid, table in self.tables.items()},
            scanned=len(self.tables),
            vanished=len(self.vanished),
            forbidden=len(self.forbidden),
        )

    def _changed(self) -> set[int]:
        """The processes not read this collection whose fd directory changed since
        :meth:`look`, or that were not there then."""
        changed = set()
        for pid in _pid_dirs(self.proc_root):
            if pid in self.skip_pids or pid in self.walked or pid in self.forbidden:
                continue
            table = self.tables.get(pid)
            try:
                if table is not None and _ident(f"{self.proc_root}/{pid}/fd") == table.ident:
                    continue
            except OSError:
                pass  # read again, which counts it
            changed.add(pid)
        return changed

    def _lost(self, all_dumped: Callable[[array[int]], bool]) -> set[int]:
        """The processes not read this collection whose kept table holds a TCP socket that is
        no longer in the dump: they closed it since, and may have opened the unplaced one.
        ``all_dumped(inodes)`` says whether every one of a table's inodes is in the dump (a
        set's ``issuperset`` here, a search of sorted columns in :mod:`.fd_columns`)."""
        return {
            pid
            for pid, table in self.tables.items()
            if pid not in self.walked and not all_dumped(table.inodes)
        }

    def _read_again(self, pids: set[int] | None) -> None:
        """Read ``pids`` again (None: every process not read yet this collection)."""
        if pids is None:
            pids = {
                pid
                for pid in _pid_dirs(self.proc_root)
                if pid not in self.skip_pids
                and pid not in self.walked
                and pid not in self.forbidden
            }
        for pid in sorted(pids):
            fresh = self._read(pid)
            if fresh is None:
                self.tables.pop(pid, None)
            else:
                self.tables[pid] = fresh

    def _holders(self) -> dict[int, tuple[int, ...]]:
        pids_by_inode: dict[int, tuple[int, ...]] = {}
        for pid in sorted(self.tables):
            credit_holder(pids_by_inode, pid, self.tables[pid].inodes)
        return pids_by_inode

    def delta(self) -> Delta:
        """What this collection changed (call after :meth:`place`). The tables read keep only
        the inodes of the dump: the TCP sockets (the walk sees every socket, Unix and UDP ones
        too), so that one gone from a later dump means the process closed it."""
        wanted = self._wanted
        read = {
            pid: Table(
                table.ident,
                table.fds,
                _compact([inode for inode in table.inodes if inode in wanted]),
                table.walked,
            )
            for pid, table in self.tables.items()
            if pid in self.walked
        }
        kept = tuple(pid for pid in self.tables if pid not in self.walked)
        return Delta(self.previous.collections, read, kept, self.unplaceable or frozenset())

    def learned(self) -> Learned:
        """What the next collection starts from (call after :meth:`place`)."""
        learned = self.delta().applied(self.previous)
        assert learned is not None  # made from self.previous itself
        return learned
