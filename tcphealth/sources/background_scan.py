"""The /proc/*/fd walk in a child process, while this one reads the socket table.

Naming the owner of every socket takes one ``readlink`` per open descriptor on the host: about
4 us each, nearly all of it in the kernel, so 1.3 s at 300,000 sockets -- as long as
decoding the netlink dump, which is all Python. Neither needs the other until the very end, so
:func:`started` forks a child to walk /proc/*/fd, and the caller decodes meanwhile. On a
machine with two free cores a run takes the longer of the two instead of their sum; on one
core it costs what the walk in this process would, plus the transfer.

The child keeps its inode map: the caller sends the inodes it wants owners for
(:meth:`PendingScan.owners`) and gets back, for each, a number standing for one of a few
holder tuples. At 300,000 sockets a map rebuilt here would be another 10 MB at the very
moment all the sockets are in memory -- the peak of a run.

In a process that collects again and again (``tcphealth serve``), the walk starts from the
descriptor tables kept by :mod:`.fd_cache` and reads again only those that changed; the new
tables come back with the answer and are kept for the next collection.

Whenever a child cannot do it (no ``fork``, other threads running, the child failed or sent
something unreadable) the walk simply runs here, when the owners are asked for: the answer
is the same either way.

A process judged by the CPU a collection costs rather than by how soon it ends (``tcphealth
serve``) asks for the walk of kept tables to be done in place (:func:`walked_in_place`): the
child gains wall time only on a spare core, and costs CPU of its own -- its fork and exit, the
pages it copies, the inodes and the answer pickled through two pipes. In place, the tables are
looked at in :func:`started` (before the dump, as the child would) and the inodes placed when
the owners are asked for; the answer is the child's.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcphealth.sources import children, fd_cache
from tcphealth.sources.procfs import FdScan, scan_fds

_in_place = False


def walked_in_place() -> None:
    """From now on, a walk that starts from kept tables (:mod:`.fd_cache` enabled) runs in
    the process that collects, with no child (see the module's docstring). A full walk (no
    tables kept) still runs in a child: its inode map of every descriptor would otherwise be
    held here at the moment the collection's memory peaks."""
    global _in_place
    _in_place = True


# The question the child is asked: this byte, then the inodes (an array("Q")). Without it
# (the parent closed the pipe without asking) the child leaves without answering.
_THESE_INODES = b"Q"


@dataclass(frozen=True)
class Owners:
    """The holders of each inode asked about: ``groups[index[k]]`` for the k-th inode, where
    ``groups[0]`` is ``()``, no process we could read holds it. ``scan`` is the rest of the
    walk (counts, descriptors per process), its inode map left empty. ``learned``: what
    changed in the descriptor tables kept for the next collection, where :mod:`.fd_cache` is
    enabled."""

    scan: FdScan
    groups: list[tuple[int, ...]]
    index: array[int]
    learned: fd_cache.Delta | None = None


class _OwnerIndex:
    """A walk's inode map as numbers: each distinct holder tuple gets one (0 for none), so an
    answer about 300,000 inodes is an array of them and a short list of tuples. Built by the
    child as soon as its walk is done, while the parent may still be decoding."""

    def __init__(self, scan: FdScan) -> None:
        self.groups: list[tuple[int, ...]] = [()]
        number: dict[tuple[int, ...], int] = {(): 0}
        for holders in scan.pids_by_inode.values():
            if holders not in number:
                number[holders] = len(self.groups)
                self.groups.append(holders)
        self.number_of = {inode: number[holders] for inode, holders in scan.pids_by_inode.items()}
        self.rest = FdScan(
            open_fds=scan.open_fds,
            scanned=scan.scanned,
            vanished=scan.vanished,
            forbidden=scan.forbidden,
        )

    def owners(self, inodes: array[int], learned: fd_cache.Delta | None = None) -> Owners:
        get = self.number_of.get
        index = array("I", [get(inode, 0) for inode in inodes])
        return Owners(self.rest, self.groups, index, learned)


def owners_from(scan: FdScan, inodes: array[int], learned: fd_cache.Delta | None = None) -> Owners:
    """The answer to :meth:`PendingScan.owners` from a walk at hand (what the child answers,
    and what a walk done here gives)."""
    return _OwnerIndex(scan).owners(inodes, learned)


def _cached_owners(
    cached: fd_cache.Learned,
    proc_root: Path,
    skip_pids: Collection[int],
    always_pids: Collection[int],
    inodes: array[int],
) -> Owners:
    """The answer from a walk that starts from the kept tables (done here)."""
    walk = fd_cache.CachedWalk(cached, skip_pids, always_pids, proc_root)
    walk.look()
    scan = walk.place(inodes)
    return owners_from(scan, inodes, walk.delta())


# Another way to answer from a walk of kept tables (see started()); None where it cannot.
AnswerWith = Callable[[fd_cache.CachedWalk, "array[int]"], "Owners | None"] | None


def _answer_of(walk: fd_cache.CachedWalk, inodes: array[int], answer_with: AnswerWith) -> Owners:
    """The answer about ``inodes`` of a walk that has looked: by ``answer_with`` where it
    answers, else by the walk's own ``place``."""
    answer = answer_with(walk, inodes) if answer_with is not None else None
    if answer is None:
        answer = owners_from(walk.place(inodes), inodes, walk.delta())
    return answer


class PendingScan:
    """A walk of /proc/*/fd under way; :meth:`owners` waits for it and asks it about inodes."""

    def __init__(
        self, proc_root: Path, skip_pids: Collection[int] = (), answer_with: AnswerWith = None
    ) -> None:
        self.proc_root = proc_root
        self.skip_pids = tuple(skip_pids)  # other helpers of ours, holding copies of our fds
        self.answer_with = answer_with
        # The tables kept from earlier collections (None: walk everything), and the processes
        # read every time anyway: this one and its parent (the server, whose descriptors
        # change with every request).
        self.cached = fd_cache.current() if proc_root == fd_cache.PROC else None
        self.always_pids = (os.getpid(), os.getppid())
        self._pid: int | None = None  # the child walking, if there is one
        self._pipe: int | None = None  # our end of the pipe it answers on
        self._question: int | None = None  # our end of the pipe we ask it on
        self._walk: fd_cache.CachedWalk | None = None  # the walk looked at here, if in place

    def start(self) -> None:
        if _in_place and self.cached is not None:
            self._walk = fd_cache.CachedWalk(
                self.cached, self.skip_pids, self.always_pids, self.proc_root
            )
            self._walk.look()  # before the dump, as the child looks while it is received
            return
        if not children.can_fork():
            return
        read_end, write_end = os.pipe()
        question_read, question_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for end in (read_end, write_end, question_read, question_write):
                os.close(end)
            return
        if pid == 0:  # the child: walk, answer, and leave without running any cleanup of ours
            os.close(read_end)
            os.close(question_write)
            _child(self, question_read, write_end)
        os.close(write_end)
        os.close(question_read)
        self._pid, self._pipe, self._question = pid, read_end, question_write

    def owners(self, inodes: array[int]) -> Owners:
        """Who holds each of ``inodes``, asked of the child that walked (see :class:`Owners`),
        or found by a walk here when there is no child or its answer is not usable."""
        if self._walk is not None:
            walk, self._walk = self._walk, None
            answer = _answer_of(walk, inodes, self.answer_with)
            fd_cache.adopt(answer.learned)
            return answer
        answer = self._ask(inodes)
        if (
            isinstance(answer, Owners)
            and isinstance(answer.scan, FdScan)
            and isinstance(answer.groups, list)
            and all(isinstance(holders, tuple) for holders in answer.groups)
            and isinstance(answer.index, array)
            and len(answer.index) == len(inodes)
            and max(answer.index, default=0) < len(answer.groups)
            and (answer.learned is None or isinstance(answer.learned, fd_cache.Delta))
        ):
            fd_cache.adopt(answer.learned)
            return answer
        if self.cached is not None:
            answer = _cached_owners(
                self.cached, self.proc_root, self.skip_pids, self.always_pids, inodes
            )
            fd_cache.adopt(answer.learned)
            return answer
        return owners_from(scan_fds(self.proc_root, skip_pids=self.skip_pids), inodes)

    def _ask(self, inodes: array[int]) -> Any:
        """Ask the child about ``inodes`` and return its unpickled answer; None when there is
        no child or it did not answer usably (the caller then walks here)."""
        if self._pid is None or self._pipe is None or self._question is None:
            return None
        try:
            # The child reads the question only once its walk is done: until then this write
            # waits, which is what this process would do anyway.
            with os.fdopen(self._question, "wb") as asking:
                self._question = None
                asking.write(_THESE_INODES)
                asking.write(inodes)  # the array's own buffer, not a copy of it
        except OSError:  # the child is gone (BrokenPipeError): walk here
            pass
        with os.fdopen(self._pipe, "rb") as answer:
            self._pipe = None
            data = answer.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        import pickle  # only needed once a child has answered: not imported by --no-processes

        try:
            return pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            return None

    def cancel(self) -> None:
        """Stop the child (by its pid) if its answer was never collected."""
        for end in (self._pipe, self._question):
            if end is not None:
                os.close(end)
        self._pipe = self._question = None
        if self._pid is not None:
            children.stop(self._pid)
            self._pid = None


@contextlib.contextmanager
def started(
    proc_root: Path, skip_pids: Collection[int] = (), answer_with: AnswerWith = None
) -> Iterator[PendingScan]:
    """Start walking ``proc_root``/*/fd in a child; the child is gone when the block ends.
    ``skip_pids``: other children of this process, whose descriptors are copies of ours.
    ``answer_with``: where the walk starts from kept tables, what answers in the child
    instead of ``place`` when it can (:func:`.fd_columns.owners_at_once`)."""
    pending = PendingScan(proc_root, skip_pids, answer_with)
    pending.start()
    try:
        yield pending
    finally:
        pending.cancel()


def _child(pending: PendingScan, question_end: int, write_end: int) -> None:
    code = 1
    try:
        import pickle

        # Our own descriptors are copies of the parent's: the parent holds those sockets.
        skip_pids = (os.getpid(), *pending.skip_pids)
        walk: fd_cache.CachedWalk | None = None
        index: _OwnerIndex | None = None
        if pending.cached is not None:
            walk = fd_cache.CachedWalk(
                pending.cached, skip_pids, pending.always_pids, pending.proc_root
            )
            walk.look()  # what changed is read while the parent reads the socket table
        else:
            index = _OwnerIndex(scan_fds(pending.proc_root, skip_pids=skip_pids))
        with os.fdopen(question_end, "rb") as asking:
            question = asking.read()
        if question[:1] != _THESE_INODES:  # the parent went away without asking
            return
        inodes = array("Q")
        inodes.frombytes(question[1:])
        del question
        if walk is not None:
            answer = _answer_of(walk, inodes, pending.answer_with)
        else:
            assert index is not None
            answer = index.owners(inodes)
        # An array pickles as its bytes: 300,000 numbers cost 1.2 MB, not a list of ints.
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as answering:
            answering.write(data)
        code = 0
    except BaseException:  # anything at all: the parent walks by itself instead
        code = 1
    finally:
        # _exit: no atexit handlers, no flushing of the stdio buffers copied from the parent.
        os._exit(code)
