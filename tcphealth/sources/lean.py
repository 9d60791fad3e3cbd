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

import contextlib
import errno
import os
import time
from array import array
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.ma  # imported here, not in each scrape's child: see PROC below
import numpy.typing as npt

from tcphealth import gcpause
from tcphealth.columnar import OWNER_SOURCES, DumpColumns, SocketTable, sockets_at
from tcphealth.model import Family, OwnerSource, Process, Snapshot, Socket, TcpState
from tcphealth.sources import (
    background_scan,
    dump_relay,
    fd_columns,
    namespaces,
    netlink,
    procfs,
)
from tcphealth.sources import columns as columns_module
from tcphealth.sources import owners as owners_module

# numpy.ma is imported here, in the server that loads this module once, because numpy
# imports it on the first np.unique (which asks np.ma.is_masked): otherwise every scrape's
# forked child imports it again, 0.025 CPU-s each (benchmarks/RESULTS.md, session 15).
PROC = Path("/proc")
# Kernel state codes (include/net/tcp_states.h).
_LISTEN = 10
# The states a connection may wait in an accept queue with no descriptor (owners.py's
# UNACCEPTED_STATES): ESTABLISHED, SYN_RECV, CLOSE_WAIT.
_UNACCEPTED_CODES = (1, 3, 8)


def table_of(
    columns: DumpColumns,
    owners: background_scan.Owners,
    proc_root: Path,
    netns: int | None = None,
) -> tuple[SocketTable, int]:
    """The rows with their holders, and how many rows stay unseen (a descriptor no process
    we read holds) after the second look. ``netns``: the namespace every row is in, where the
    object path notes it on each socket (a collection of every namespace)."""
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
    for draft in drafts:
        draft.netns = netns
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
    return SocketTable(columns, holders, groups, sources, netns), still_unseen


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


# The states most of a busy host's sockets are in, which the rules with a table check read
# as columns: their rows are made objects only when a rule without one asks for them
# (SnapshotIndex.sockets), or a few at a time for a finding (SnapshotIndex.objects_at).
# Every other state's sockets are objects in the snapshot.
BULK_CODES = (1, 5, 6, 8)  # ESTABLISHED, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT


def snapshot_of(
    table: SocketTable,
    scan: procfs.FdScan,
    unseen: int,
    notes: list[str],
    proc_root: Path,
    taken_at: float,
) -> Snapshot:
    """The snapshot that goes with ``table``: its sockets are the rows in every state but
    the bulk ones (BULK_CODES) as objects; processes, attribution, notes and the host's
    facts as :func:`procfs.assemble` makes them. Only the table-aware diagnosis and report
    (``diagnose(..., table=...)``, ``build_report(..., table=...)``) read it."""
    rows = np.flatnonzero(~np.isin(table.columns.state, BULK_CODES))
    sockets = table.sockets(rows)
    used = np.unique(table.holders).tolist()
    processes, attribution = procfs.holders_read(
        (table.groups[at] for at in used), scan, unseen, notes, proc_root
    )
    return procfs.host_snapshot(
        sockets, notes, proc_root, taken_at, "netlink", processes, attribution
    )


# Why a collection did not take this path (the exporter's tcphealth_collect_path_info says
# it): a few fixed phrases, so that the label stays bounded.
NOT_PROC = "another /proc"
NO_NETLINK = "no netlink sock_diag"
NAMESPACES = "several network namespaces"
UNREAD_MESSAGE = "a message the columns do not read"


def collect(
    proc_root: Path = Path("/proc"), *, scope: str = "auto", node_root: Path = Path("/")
) -> tuple[Snapshot, SocketTable] | str:
    """This host's sockets as a table and its snapshot (:func:`snapshot_of`), as
    ``sources.collect_live`` would see them with this ``scope`` -- or why this path does not
    apply (another network namespace to read, no netlink, a message the columns do not
    read; one of the phrases above): the caller collects the object way then."""
    if proc_root != PROC:
        return NOT_PROC
    if not netlink.available() or not os.path.isdir("/proc/self/ns"):
        return NO_NETLINK
    discovery = namespaces.discover(proc_root)
    root = os.geteuid() == 0
    every = root and (scope == "all" or (scope == "auto" and discovery.own == discovery.host))
    if every and discovery.others:
        return NAMESPACES  # the object path reads them all
    taken_at = time.time()
    requests = [netlink.build_request_of_both(1, with_tcp_info=True)]
    with contextlib.ExitStack() as stack:
        relay = stack.enter_context(
            dump_relay.started(
                requests, buffer_size=netlink.RECEIVE_BUFFER, timeout=netlink.DUMP_TIMEOUT
            )
        )
        helpers = () if relay is None or relay.pid is None else (relay.pid,)
        pending = stack.enter_context(
            background_scan.started(proc_root, helpers, fd_columns.owners_at_once)
        )
        with gcpause.paused():
            columns = _dumped(relay)
            if columns is None:
                return UNREAD_MESSAGE
            # Read with the dump, as the collection of every namespace reads them.
            own_read = namespaces._Read(
                procfs.read_sysctls(proc_root), procfs.read_counters(proc_root)
            )
            # Copied as bytes: a list of the inodes first would hold 300,000 Python ints.
            inodes = array("Q")
            inodes.frombytes(columns.inode.astype(np.uint64).tobytes())
            owners = pending.owners(inodes)
            del inodes
            table, unseen = table_of(columns, owners, proc_root, discovery.own if every else None)
            scan = owners.scan
            del owners
    notes: list[str] = []
    snapshot = snapshot_of(table, scan, unseen, notes, proc_root, taken_at)
    if every:
        read = {} if discovery.own is None else {discovery.own: own_read}
        labelled = namespaces.label(
            snapshot, discovery, read, proc_root=proc_root, node_root=node_root
        )
        return labelled, table
    return (
        namespaces.this_namespace(
            snapshot,
            proc_root,
            node_root=node_root,
            discovery=discovery,
            note_others=scope != "self",
        ),
        table,
    )


def _dumped(relay: dump_relay.Relay | None) -> DumpColumns | None:
    """Both families' sockets as columns, IPv4's first, each family's in its dump's order (as
    the object path's two dumps give them): from one dump of both (relayed by ``relay``'s
    child if there is one, else received here), or from one dump per family received here
    where the kernel does not answer that one. None where a message is not one the columns
    read."""
    chunks = (
        netlink._relayed_of_both(relay, 0)
        if relay is not None
        else netlink._received_of_both(netlink.DUMP_TIMEOUT)
    )
    try:
        decoded = columns_module.decoded_parts(chunks, netlink.BOTH_FAMILIES)
    except (OSError, netlink.NetlinkError):
        return _dumped_per_family()  # which says what is wrong if that fails too
    if decoded is None:
        return None
    found, done = decoded
    if not done:
        raise netlink.NetlinkError(netlink.BOTH_FAMILIES, "the dump ended without NLMSG_DONE")
    return columns_module.in_family_order(columns_module.joined(found))


def _dumped_per_family() -> DumpColumns | None:
    """Both families' dumps as columns, one after the other, received here; None where a
    message is not one the columns read."""
    parts: list[dict[str, columns_module.Array]] = []
    for family in (Family.IPV4, Family.IPV6):
        where = f"netlink sock_diag ({family.value})"
        chunks = netlink._received(family, True, netlink.DUMP_TIMEOUT)
        try:
            decoded = columns_module.decoded_parts(chunks, where)
        except OSError as error:
            if family is Family.IPV6 and error.errno == errno.EAFNOSUPPORT:
                continue  # a kernel without IPv6
            raise netlink.NetlinkError(where, str(error)) from None
        if decoded is None:
            return None
        found, done = decoded
        if not done:
            raise netlink.NetlinkError(where, "the dump ended without NLMSG_DONE")
        parts.extend(found)
    return columns_module.joined(parts)
