"""The psutil source, for hosts without /proc (macOS, Windows, the BSDs) and on request on Linux.

psutil reports addresses, state and the owning pid, but no queues, timers, retransmits, inodes
or kernel settings: those stay ``None`` in the snapshot, and the diagnosis says what it could not
check instead of reading them as zero.
"""

from __future__ import annotations

import ipaddress
import os
import platform
import socket as socket_module
import time
from typing import Any

import psutil

from tcphealth import bounds
from tcphealth.model import (
    Attribution,
    Endpoint,
    Family,
    HostInfo,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    TcpState,
    parse_state,
)


def _endpoint(address: Any, family: Family) -> Endpoint:
    """psutil gives ``addr(ip, port)`` for a bound side and an empty tuple for an unbound one."""
    if address:
        ip = address.ip.split("%", 1)[0]  # drop an IPv6 zone index ("fe80::1%eth0")
        return Endpoint(ipaddress.ip_address(ip), address.port)
    unspecified = "0.0.0.0" if family is Family.IPV4 else "::"
    return Endpoint(ipaddress.ip_address(unspecified), 0)


def _process(pid: int) -> Process:
    """What psutil can say of one process; what it may not read stays unknown."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = _try(proc.name)
            user = _try(proc.username)
            cmdline = _try(proc.cmdline)
            uids = _try(proc.uids) if hasattr(proc, "uids") else None
            open_fds = _try(proc.num_fds) if hasattr(proc, "num_fds") else None
            limits = None
            if hasattr(proc, "rlimit") and hasattr(psutil, "RLIMIT_NOFILE"):
                limits = _try(lambda: proc.rlimit(psutil.RLIMIT_NOFILE))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return Process(pid=pid)
    soft = hard = None
    if limits is not None:
        infinity = getattr(psutil, "RLIM_INFINITY", -1)
        soft = None if limits[0] == infinity else int(limits[0])
        hard = None if limits[1] == infinity else int(limits[1])
    return bounds.capped_process(
        Process(
            pid=pid,
            name=_visible_bytes(name) if name is not None else None,
            user=user,
            uid=uids.real if uids is not None else None,
            cmdline=tuple(_visible_bytes(arg) for arg in cmdline) if cmdline else None,
            open_fds=open_fds,
            fd_soft_limit=soft,
            fd_hard_limit=hard,
        )
    )


def _visible_bytes(text: str) -> str:
    """psutil hands bytes that are not UTF-8 over as lone surrogates (``\\udcff``); write them
    as the procfs source does (``\\xff``), so a name reads the same whichever source saw it."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _try(call: Any) -> Any:
    try:
        return call()
    except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess, OSError):
        return None


def collect(*, with_processes: bool = True) -> Snapshot:
    taken_at = time.time()
    notes: list[str] = []
    # (family, laddr, raddr, status, pid) for every TCP socket psutil lists.
    connections: list[tuple[int, Any, Any, str, int | None]] = []
    try:
        for conn in psutil.net_connections(kind="tcp"):
            connections.append((conn.family, conn.laddr, conn.raddr, conn.status, conn.pid))
        complete = True
    except psutil.AccessDenied:
        # macOS lets only root list other users' sockets; fall back to our own processes.
        complete = False
        for proc in psutil.process_iter():
            try:
                for own in proc.net_connections(kind="tcp"):
                    connections.append((own.family, own.laddr, own.raddr, own.status, proc.pid))
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        notes.append("only this user's sockets are listed: run as root/Administrator to see all")

    # psutil lists a socket shared by several processes once per process; there is no inode
    # to key on, so the address pair and state identify it (SO_REUSEPORT listeners on one
    # address merge into one, which psutil cannot tell apart anyway).
    merged: dict[tuple[Family, Endpoint, Endpoint, TcpState], set[int]] = {}
    for conn_family, laddr, raddr, status, pid in connections:
        family = Family.IPV6 if conn_family == socket_module.AF_INET6 else Family.IPV4
        state = parse_state(status) or TcpState.UNKNOWN
        key = (family, _endpoint(laddr, family), _endpoint(raddr, family), state)
        holders = merged.setdefault(key, set())
        if with_processes and pid:
            holders.add(pid)

    sockets: list[Socket] = []
    unseen = 0
    for (family, local, remote, state), pids in merged.items():
        if not with_processes:
            owner = OwnerSource.UNKNOWN
        elif pids:
            owner = OwnerSource.FD
        else:
            # psutil gives no pid both for sockets nobody holds (TIME_WAIT) and for ones it
            # could not attribute; only the state tells them apart.
            owner = OwnerSource.NONE if state is TcpState.TIME_WAIT else OwnerSource.UNSEEN
            unseen += owner is OwnerSource.UNSEEN
        sockets.append(
            Socket(
                family=family,
                local=local,
                remote=remote,
                state=state,
                pids=tuple(sorted(pids)),
                owner_source=owner,
            )
        )
    processes: tuple[Process, ...] = ()
    if with_processes:
        processes = tuple(_process(pid) for pid in sorted({p for s in sockets for p in s.pids}))
    is_root = os.geteuid() == 0 if hasattr(os, "geteuid") else None
    if complete and unseen and is_root is False:
        # As on procfs: say once how to see the owners psutil could not.
        notes.append(
            f"{unseen} socket(s) have no owner psutil could see: this user may not look into "
            "other users' processes; run as root to see them"
        )
    return Snapshot(
        host=HostInfo(
            hostname=socket_module.gethostname(),
            kernel=platform.release() or None,
            taken_at=taken_at,
            source="psutil",
            privileged=is_root,
            platform=platform.system().lower() or None,
        ),
        attribution=Attribution(
            attempted=with_processes,
            processes_forbidden=0 if complete else 1,
            sockets_unseen=unseen,
        ),
        sockets=tuple(sockets),
        processes=processes,
        notes=tuple(notes),
    )
