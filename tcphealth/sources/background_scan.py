"""The /proc/*/fd walk in a child process, while this one reads the socket table.

Naming the owner of every socket takes one ``readlink`` per open descriptor on the host: about
4 us each, nearly all of it in the kernel, so 1.3 s at 300,000 sockets -- as long as
decoding the netlink dump, which is all Python. Neither needs the other until the very end, so
:func:`started` forks a child to walk /proc/*/fd and send back what it found, and the caller
decodes meanwhile. On a machine with two free cores a run takes the longer of the two instead
of their sum; on one core it costs what the walk in this process would, plus the transfer.

Whenever a child cannot do it (no ``fork``, other threads running, the child failed or sent
something unreadable) the walk simply runs here, when the result is asked for: the outcome
is the same :class:`~tcphealth.sources.procfs.FdScan` either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tcphealth.sources.procfs import FdScan, scan_fds

# What the child sends: an FdScan with its inode map grouped by holders, as arrays of inodes.
_Payload = tuple[dict[tuple[int, ...], bytes], dict[int, int], int, int, int]


class PendingScan:
    """A walk of /proc/*/fd under way; :meth:`result` waits for it and returns the scan."""

    def __init__(self, proc_root: Path) -> None:
        self.proc_root = proc_root
        self._pid: int | None = None  # the child walking, if there is one
        self._pipe: int | None = None  # our end of the pipe it answers on
        self._scan: FdScan | None = None

    def start(self) -> None:
        if not _can_fork():
            return
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: walk, answer, and leave without running any cleanup of ours
            os.close(read_end)
            _child(self.proc_root, write_end)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def result(self, only: Iterable[int] | None = None) -> FdScan:
        """The scan. With ``only`` (inodes), the child's answer is kept for those inodes alone,
        in a map whose keys are the very int objects given: at 300,000 sockets, a map of its
        own ints would hold another 8 MB while the sockets are finished. (The walk done here,
        without a child, maps every inode as always.)"""
        if self._scan is None:
            self._scan = self._from_child(only) or scan_fds(self.proc_root)
        return self._scan

    def _from_child(self, only: Iterable[int] | None) -> FdScan | None:
        """The child's scan; None when there is no child or its answer is not usable."""
        if self._pid is None or self._pipe is None:
            return None
        with os.fdopen(self._pipe, "rb") as answer:
            self._pipe = None
            data = answer.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        import pickle  # only needed once a child has answered: not imported by --no-processes

        try:
            payload: _Payload = pickle.loads(data)
            return _decode(payload, only)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return None

    def cancel(self) -> None:
        """Stop the child (by its pid) if its answer was never collected."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = None


@contextlib.contextmanager
def started(proc_root: Path) -> Iterator[PendingScan]:
    """Start walking ``proc_root``/*/fd in a child; the child is gone when the block ends."""
    pending = PendingScan(proc_root)
    pending.start()
    try:
        yield pending
    finally:
        pending.cancel()


def _can_fork() -> bool:
    # fork() copies only the calling thread: with others running, a lock one of them holds
    # would stay held in the child forever. (Without threading imported, no other thread was
    # started from Python.)
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


def _child(proc_root: Path, write_end: int) -> None:
    code = 1
    try:
        import pickle

        # Our own descriptors are copies of the parent's: the parent holds those sockets.
        scan = scan_fds(proc_root, skip_pid=os.getpid())
        data = pickle.dumps(_encode(scan), protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as answer:
            answer.write(data)
        code = 0
    except BaseException:  # anything at all: the parent walks by itself instead
        code = 1
    finally:
        # _exit: no atexit handlers, no flushing of the stdio buffers copied from the parent.
        os._exit(code)


def _encode(scan: FdScan) -> _Payload:
    """The inode map grouped by holders (most sockets have one holder, shared by thousands),
    each group's inodes as one array: compact to send, and quick to rebuild with
    ``dict.fromkeys``."""
    groups: dict[tuple[int, ...], array[int]] = {}
    for inode, holders in scan.pids_by_inode.items():
        group = groups.get(holders)
        if group is None:
            group = groups[holders] = array("Q")
        group.append(inode)
    packed = {holders: inodes.tobytes() for holders, inodes in groups.items()}
    return packed, scan.open_fds, scan.scanned, scan.vanished, scan.forbidden


def _decode(payload: Any, only: Iterable[int] | None = None) -> FdScan:
    packed, open_fds, scanned, vanished, forbidden = payload
    pids_by_inode: dict[int, tuple[int, ...]]
    if only is None:
        pids_by_inode = {}
        for holders, data in packed.items():
            inodes = array("Q")
            inodes.frombytes(data)
            pids_by_inode.update(dict.fromkeys(inodes, holders))
    else:
        nobody: tuple[int, ...] = ()
        pids_by_inode = dict.fromkeys(only, nobody)
        for holders, data in packed.items():
            inodes = array("Q")
            inodes.frombytes(data)
            for inode in inodes:
                if inode in pids_by_inode:
                    pids_by_inode[inode] = holders
        for inode in [inode for inode, holders in pids_by_inode.items() if not holders]:
            del pids_by_inode[inode]  # held by no process the child could read
    return FdScan(
        pids_by_inode=pids_by_inode,
        open_fds=open_fds,
        scanned=scanned,
        vanished=vanished,
        forbidden=forbidden,
    )
