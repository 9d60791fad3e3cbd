"""Owners for the columns of a dump: who holds each row, as the object path works it out.

The object path (:func:`tcphealth.sources.netlink.collect`) sets each socket's owners from the
fd walk, credits the connections still in an accept queue to their listener
(:func:`~tcphealth.sources.owners.credit_in_place`), and looks again for the sockets opened
while the walk ran (:func:`~tcphealth.sources.procfs.second_look`). Here the walk's answer is
already an array (``Owners.index``: one holder-group number per row), so most rows need no
work at all. Objects are made only for the rows that work reads or changes: the listeners,
the rows a listener may be credited with, the unseen rows, and the rows the second look
would take its candidate processes from (those holding a connection to an unseen row's
peer) -- then the same two functions run on those objects, and their answers are written
back as group numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tcphealth.columnar import OWNER_SOURCES, DumpColumns, SocketTable, sockets_at
from tcphealth.model import OwnerSource, Process, Socket, TcpState
from tcphealth.sources import background_scan, procfs
from tcphealth.sources import owners as owners_module

# Kernel state codes (include/net/tcp_states.h).
_LISTEN = 10
# The states a connection may wait in an accept queue with no descriptor (owners.py's
# UNACCEPTED_STATES): ESTABLISHED, SYN_RECV, CLOSE_WAIT.
_UNACCEPTED_CODES = (1, 3, 8)


def table_of(
    columns: DumpColumns, owners: background_scan.Owners, proc_root: Path
) -> tuple[SocketTable, int]:
    """The rows with their holders, and how many rows stay unseen (a descriptor no process
    we read holds) after the second look."""
    groups = list(owners.groups)
    holders = np.frombuffer(owners.index, dtype=np.uint32).copy()
    if len(holders) != len(columns):
        raise ValueError("the owners answer another dump")
    state, inode = columns.state, columns.inode
    listen = state == _LISTEN
    unaccepted = (inode == 0) & np.isin(state, _UNACCEPTED_CODES)
    unseen = (inode != 0) & (holders == 0)
    worked = listen | unaccepted | unseen
    if bool(unseen.any()):
        worked |= _second_look_candidates(columns, holders, unseen)
    rows = np.flatnonzero(worked)
    drafts = sockets_at(columns, rows)
    held, not_held, nobody = OwnerSource.FD, OwnerSource.UNSEEN, OwnerSource.NONE
    sockets: list[Socket] = []
    listeners: list[Socket] = []
    unaccepted_at: list[int] = []
    unseen_sockets: list[Socket] = []
    # netlink._finish_all's rule, for these rows only.
    for position, (draft, group) in enumerate(zip(drafts, holders[rows].tolist(), strict=True)):
        if not draft.inode:
            sock = draft.finish((), nobody)
            if sock.state in owners_module.UNACCEPTED_STATES:
                unaccepted_at.append(position)
        elif group:
            sock = draft.finish(groups[group], held)
        else:
            sock = draft.finish((), not_held)
            unseen_sockets.append(sock)
        if sock.state is TcpState.LISTEN:
            listeners.append(sock)
        sockets.append(sock)
    owners_module.credit_in_place(
        sockets, owners_module.Sorted(listeners, unaccepted_at, unseen_sockets)
    )
    sockets, still_unseen = procfs.second_look(sockets, owners.scan, proc_root, unseen_sockets)
    # How each row's holders are known, as netlink._finish_all says it; then the worked rows'
    # holders and sources as the credit and the second look left them.
    source_at = {source: at for at, source in enumerate(OWNER_SOURCES)}
    sources = np.full(len(columns), source_at[held], dtype=np.uint8)
    sources[holders == 0] = source_at[not_held]
    sources[inode == 0] = source_at[nobody]
    number = {pids: at for at, pids in enumerate(groups)}
    for row, sock in zip(rows.tolist(), sockets, strict=True):
        at = number.get(sock.pids)
        if at is None:
            at = number[sock.pids] = len(groups)
            groups.append(sock.pids)
        holders[row] = at
        sources[row] = source_at[sock.owner_source]
    return SocketTable(columns, holders, groups, sources), still_unseen


def _second_look_candidates(
    columns: DumpColumns, holders: npt.NDArray[np.uint32], unseen: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """The held rows (not listeners) whose peer is an unseen row's peer: where
    :func:`procfs.second_look` takes the processes it reads again from."""
    peer_of = _peer_keys(columns)
    wanted = {peer_of(row) for row in np.flatnonzero(unseen).tolist()}
    ports = np.array(sorted({key[3] for key in wanted}), dtype=np.uint32)
    maybe = (holders != 0) & (columns.state != _LISTEN) & np.isin(columns.dport, ports)
    found = np.zeros(len(columns), dtype=np.bool_)
    for row in np.flatnonzero(maybe).tolist():
        if peer_of(row) in wanted:
            found[row] = True
    return found


def _peer_keys(columns: DumpColumns) -> Callable[[int], tuple[int, int, int, int]]:
    family, high, low, port = columns.family, columns.dst_high, columns.dst_low, columns.dport

    def key(row: int) -> tuple[int, int, int, int]:
        # An Endpoint's equality: the address (IPv4 and IPv6 objects never equal) and port.
        return (int(family[row]), int(high[row]), int(low[row]), int(port[row]))

    return key


def processes_of(table: SocketTable, scan: procfs.FdScan, proc_root: Path) -> list[Process]:
    """The processes holding the table's rows, read as the object path reads them."""
    used = np.unique(table.holders).tolist()
    processes, _ = procfs.read_holders((table.groups[at] for at in used), scan, proc_root)
    return processes
