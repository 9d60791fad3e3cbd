"""What several rules need to know alike, kept on one floor below them so that no rule
imports another: how full a listener's accept queue is and who owns it (the listener rule, and
the SYN_RECV and never-accepted CLOSE_WAIT that pile up behind a full queue), and how many times
a socket has retransmitted (the handshake, closing and established rules).
"""

from __future__ import annotations

import heapq
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import (
    Destination,
    SnapshotIndex,
    destination,
    hides_host,
    owned_by_fd,
)
from tcphealth.diagnose.wording import (
    named_destinations,
    number,
    pids_key,
    process_subject,
    share_text,
)
from tcphealth.model import (
    Elision,
    Endpoint,
    ErrorKind,
    ErrorLine,
    Evidence,
    KernelEvent,
    KernelMessage,
    ReportedCount,
    Severity,
    Snapshot,
    Socket,
    Subject,
    SubjectKind,
    Sysctls,
    TcpState,
)
from tcphealth.states import host_or_default, port_range_or_default, syn_queue_capacity

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    import numpy as np
    import numpy.typing as npt

    from tcphealth.columnar import AddressTable, DumpColumns, SocketTable


def retransmits_of(sock: Socket) -> int | None:
    """Consecutive retransmission timeouts: the socket's own field, else tcp_info's."""
    if sock.retransmits is not None:
        return sock.retransmits
    if sock.tcp_info is not None:
        return sock.tcp_info.retransmits
    return None


@dataclass(frozen=True)
class AcceptQueue:
    """How full a listener's accept queue is, as far as the source lets us know.

    ``fill`` is queued / backlog. When the source has no backlog (a copy of /proc), it is
    queued / somaxconn instead: the backlog can be no larger than somaxconn, so that figure is
    a lower bound (``fill_is_lower_bound``) -- enough to prove a queue full, never to prove it
    has room.
    """

    queued: int | None
    backlog: int | None
    somaxconn: int | None
    fill: float | None
    fill_is_lower_bound: bool

    def is_full(self, thresholds: Thresholds) -> bool:
        """Known to be at or over the critical fill (only ever True on proof)."""
        return self.fill is not None and self.fill >= thresholds.accept_queue_critical_ratio

    def limit_text(self) -> str:
        if self.backlog is not None:
            return f"a backlog of {number(self.backlog)}"
        if self.somaxconn is not None:
            return f"at most somaxconn {number(self.somaxconn)} (backlog not reported)"
        return "an unknown backlog"

    def unchecked(self, endpoint: str) -> tuple[str, ...]:
        if self.backlog is not None:
            return ()
        if self.somaxconn is not None:
            return (
                f"the listen backlog of {endpoint}: not in the source, so "
                f"net.core.somaxconn ({number(self.somaxconn)}) was used as its upper bound",
            )
        return (
            f"the listen backlog of {endpoint}: neither the backlog nor net.core.somaxconn is "
            "in the snapshot, so whether the queue is full could not be checked",
        )


def assess_accept_queue(listener: Socket, sysctls: Sysctls) -> AcceptQueue:
    queued = listener.recv_queue
    backlog = listener.listen_backlog
    somaxconn = sysctls.somaxconn
    fill: float | None = None
    lower_bound = False
    if queued is not None:
        if backlog is not None:
            # listen(fd, 0) still queues one connection; max(…, 1) keeps 1/0 meaning "full".
            fill = queued / max(backlog, 1)
        elif somaxconn is not None:
            fill = queued / max(somaxconn, 1)
            lower_bound = True
    return AcceptQueue(queued, backlog, somaxconn, fill, lower_bound)


def syn_queue_room(listener: Socket, sysctls: Sysctls) -> int | None:
    """How many half-open handshakes the listener's SYN queue keeps before the next SYN gets
    a cookie or is dropped; None without the listen backlog (a copy of /proc). The SYN-queue
    rule speaks of a listener whose SYN_RECV reach it; the handshake rule of those below."""
    if listener.listen_backlog is None:
        return None
    cookies, _ = host_or_default(sysctls, "tcp_syncookies")
    return syn_queue_capacity(listener.listen_backlog, cookies, sysctls.tcp_max_syn_backlog)


def listener_owner(listener: Socket) -> tuple[int, ...]:
    return tuple(sorted(set(listener.pids))) if owned_by_fd(listener) else ()


def listener_subject(index: SnapshotIndex, listener: Socket) -> Subject:
    return process_subject(
        index, listener_owner(listener), SubjectKind.LISTENER, address=listener.local
    )


def owner_unchecked(listener: Socket) -> tuple[str, ...]:
    if listener_owner(listener):
        return ()
    return (f"which process owns the listener {listener.local}: the source does not say",)


def overflow_counter_evidence(index: SnapshotIndex) -> tuple[Evidence, ...]:
    counters = index.snapshot.counters
    evidence: list[Evidence] = []
    overflows = counters.get("TcpExt.ListenOverflows")
    if overflows is not None:
        evidence.append(
            Evidence(
                "ListenOverflows",
                overflows,
                "handshakes dropped host-wide since boot because an accept queue was full",
            )
        )
    drops = counters.get("TcpExt.ListenDrops")
    if drops is not None:
        evidence.append(Evidence("ListenDrops", drops, "all drops at listeners, overflow included"))
    return tuple(evidence)


def owner_next_steps(
    pids: tuple[int, ...], port: int | None, platform: str | None = None
) -> tuple[str, ...]:
    """What to run about a listener that does not accept: ``ss`` and /proc on Linux (and where
    the platform is not known); netstat -L, sockstat and lsof where a paste says it came from
    macOS or a BSD, which have neither."""
    if platform in BSD_LIKE:
        return _bsd_owner_next_steps(pids, port)
    port_filter = f" 'sport = :{port}'" if port is not None else ""
    steps = [f"ss -ltnp{port_filter}   # Recv-Q (waiting) against Send-Q (backlog)"]
    steps.append("nstat -az TcpExtListenOverflows TcpExtListenDrops   # still rising?")
    if pids:
        pid = pids[0]
        steps.append(f"grep State /proc/{pid}/status   # T = stopped, D = stuck in the kernel")
        steps.append(
            f"strace -f -e trace=accept,accept4 -p {pid}   # does it call accept() at all?"
        )
    steps.append(
        "Fix the accept loop (a stopped, blocked or overloaded thread). A larger listen() "
        "backlog and net.core.somaxconn only delay the overflow."
    )
    return tuple(steps)


def _bsd_owner_next_steps(pids: tuple[int, ...], port: int | None) -> tuple[str, ...]:
    # netstat -L's qlen/incqlen/maxqlen is the BSD view of Recv-Q against the backlog; its
    # counters are under netstat -s -p tcp, worded differently by each system.
    where = f":{port}" if port is not None else ""
    steps = [
        "netstat -Lan -p tcp   # qlen (waiting) against maxqlen (backlog), per listener",
        "netstat -s -p tcp | grep -i listen   # dropped for a full queue: still rising?",
        f"lsof -nP -iTCP{where} -sTCP:LISTEN   # who owns it (macOS, and BSD with the lsof port)",
    ]
    if port is not None:
        steps.append(f"sockstat -46l -p {port}   # who owns it (FreeBSD)")
    if pids:
        pid = pids[0]
        steps.append(f"ps -o pid,stat,wchan -p {pid}   # T = stopped, else where it waits")
    steps.append(
        "Fix the accept loop (a stopped, blocked or overloaded thread). A larger listen() "
        "backlog and kern.ipc.somaxconn (kern.ipc.soacceptqueue on FreeBSD) only delay the "
        "overflow."
    )
    return tuple(steps)


# Platforms (HostInfo.platform) whose commands are the BSD family's: netstat's macOS/BSD
# format says "darwin" for both, as their listings cannot be told apart.
BSD_LIKE = frozenset({"darwin", "freebsd", "openbsd", "netbsd"})
_PLATFORM_NAMES = {"darwin": "macOS or BSD", "windows": "Windows"}
# How a next step that only Linux has begins: ss, /proc, Linux's sysctl keys, nstat, strace.
_LINUX_ONLY = (
    "ss ",
    "nstat ",
    "strace ",
    "sysctl net.ipv4",
    "sysctl net.core",
    "sysctl -w net.ipv4",
    "cat /proc/",
    "ls /proc/",
    "ls -l /proc/",
    "grep State /proc/",
)
LINUX_MARK = "   # a Linux command: "


# Words of a pasted counting command that only one platform's tools have, for a count with
# no table to say where it was taken. netstat, lsof and grep are everywhere and say nothing.
_COMMAND_PLATFORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|[|;&(]|\bsudo)\s*ss\s"), "linux"),
    (re.compile(r"/proc/"), "linux"),
    (re.compile(r"Get-NetTCPConnection|\bfindstr\b", re.IGNORECASE), "windows"),
    (re.compile(r"(?:^|[|;&(]|\bsudo)\s*sockstat\b"), "freebsd"),
    # BSD's and macOS's word for the state, never Linux's (CLOSE) or Windows' (CLOSED too,
    # but with findstr or PowerShell, caught above).
    (re.compile(r"CLOSED"), "darwin"),
)
# The platform of a paste whose counts say nothing of it: steps for Linux, marked as such.
UNKNOWN_PLATFORM = "unknown"


def count_platform(snapshot: Snapshot, count: ReportedCount) -> str:
    """The platform of the host a pasted count was taken on: the snapshot's where it says,
    else what the counting command's own tools say, else :data:`UNKNOWN_PLATFORM`."""
    if snapshot.host.platform is not None:
        return snapshot.host.platform
    for pattern, platform in _COMMAND_PLATFORMS:
        if pattern.search(count.command):
            return platform
    return UNKNOWN_PLATFORM


def steps_platform(snapshot: Snapshot) -> str | None:
    """The platform next steps are written for: the snapshot's; for a paste that says none
    but printed counts, the one its counting commands agree on, else
    :data:`UNKNOWN_PLATFORM` (a count-only ``netstat -an | grep -c`` may come from any
    system). None where nothing says, as in a snapshot file older than the field."""
    if snapshot.host.platform is not None or not snapshot.reported:
        return snapshot.host.platform
    platforms = {count_platform(snapshot, count) for count in snapshot.reported}
    return platforms.pop() if len(platforms) == 1 else UNKNOWN_PLATFORM


def platform_steps(
    platform: str | None,
    linux: tuple[str, ...],
    *,
    bsd: tuple[str, ...] | None = None,
    windows: tuple[str, ...] | None = None,
    elsewhere: Elsewhere | None = None,
) -> tuple[str, ...]:
    """The next steps that fit the platform the snapshot says it comes from: ``linux`` on Linux
    or where it is not known, else the platform's own (``bsd``/``windows``, or ``elsewhere``'s),
    else ``linux`` marked as Linux's."""
    if elsewhere is not None:
        bsd, windows = elsewhere.bsd, elsewhere.windows
    if platform is None or platform == "linux":
        return linux
    chosen = bsd if platform in BSD_LIKE else windows if platform == "windows" else None
    return chosen if chosen is not None else mark_linux_steps(platform, linux)


def mark_linux_steps(platform: str | None, steps: tuple[str, ...]) -> tuple[str, ...]:
    """``steps`` with each command only Linux has marked as such, where the snapshot comes
    from another platform (a pasted macOS, BSD or Windows table): a reader there must not be
    sent looking for ``ss``."""
    if platform is None or platform == "linux":
        return steps
    where = (
        "the paste does not say which system it comes from"
        if platform == UNKNOWN_PLATFORM
        else f"not on {_PLATFORM_NAMES.get(platform, platform)}"
    )
    return tuple(
        f"{step}{LINUX_MARK}{where}"
        if step.startswith(_LINUX_ONLY) and LINUX_MARK not in step
        else step
        for step in steps
    )


# How a state is spelled where there is no ss: BSD's and macOS's netstat and lsof -sTCP: (the
# kernel's own names), and Windows' netstat and Get-NetTCPConnection -State.
_BSD_STATE_NAMES = {
    TcpState.SYN_SENT: "SYN_SENT",
    TcpState.SYN_RECV: "SYN_RCVD",
    TcpState.CLOSE_WAIT: "CLOSE_WAIT",
    TcpState.FIN_WAIT1: "FIN_WAIT_1",
    TcpState.FIN_WAIT2: "FIN_WAIT_2",
    TcpState.CLOSING: "CLOSING",
    TcpState.LAST_ACK: "LAST_ACK",
}
_WINDOWS_STATE_NAMES = {
    TcpState.SYN_SENT: ("SynSent", "SYN_SENT"),
    TcpState.SYN_RECV: ("SynReceived", "SYN_RECEIVED"),
    TcpState.CLOSE_WAIT: ("CloseWait", "CLOSE_WAIT"),
    TcpState.FIN_WAIT1: ("FinWait1", "FIN_WAIT_1"),
    TcpState.FIN_WAIT2: ("FinWait2", "FIN_WAIT_2"),
    TcpState.CLOSING: ("Closing", "CLOSING"),
    TcpState.LAST_ACK: ("LastAck", "LAST_ACK"),
}


@dataclass(frozen=True)
class Elsewhere:
    """Next steps for a pasted macOS/BSD table and for a Windows one, beside a rule's Linux
    steps (see :func:`platform_steps`)."""

    bsd: tuple[str, ...]
    windows: tuple[str, ...]

    def plus(self, other: Elsewhere) -> Elsewhere:
        return Elsewhere((*self.bsd, *other.bsd), (*self.windows, *other.windows))

    def then(self, *steps: str) -> Elsewhere:
        """These steps, followed by ``steps`` (advice that holds on every platform)."""
        return Elsewhere((*self.bsd, *steps), (*self.windows, *steps))


def listing_elsewhere(
    state: TcpState,
    *,
    pid: int | None = None,
    port: int | None = None,
    local_port: bool = True,
    address: str | None = None,
    why: str | None = None,
) -> Elsewhere:
    """Commands that list the sockets in ``state`` on macOS/BSD and on Windows: held by
    ``pid``, else on ``port`` (the local one, or the remote with ``local_port`` False), else
    toward ``address``, else all of them; ``why`` is a comment for the first command."""
    name = _BSD_STATE_NAMES[state]
    cmdlet, shown = _WINDOWS_STATE_NAMES[state]
    note = f"   # {why}" if why else ""
    bsd: tuple[str, ...]
    windows: tuple[str, ...]
    if pid is not None:
        bsd = (
            f"lsof -nP -a -p {pid} -iTCP -sTCP:{name}{note}",
            f"sockstat -46s -P tcp | awk '$3 == {pid} && /{name}/'   # the same on FreeBSD",
        )
        windows = (f"Get-NetTCPConnection -State {cmdlet} -OwningProcess {pid}{note}",)
    elif port is not None:
        column = "$4" if local_port else "$5"
        bsd = (
            f"netstat -an -p tcp | awk '$6 == \"{name}\" && {column} ~ /[.]{port}$/'{note}",
            f"lsof -nP -iTCP:{port} -sTCP:{name}   # who holds them (macOS, as root)",
        )
        side = "LocalPort" if local_port else "RemotePort"
        windows = (f"Get-NetTCPConnection -State {cmdlet} -{side} {port}{note}",)
    elif address is not None:
        pattern = address.replace(".", "[.]")  # BSD's netstat puts the port after a dot
        bsd = (f"netstat -an -p tcp | awk '$6 == \"{name}\" && $5 ~ /^{pattern}[.]/'{note}",)
        windows = (f"Get-NetTCPConnection -State {cmdlet} -RemoteAddress {address}{note}",)
    else:
        bsd = (
            f"netstat -an -p tcp | grep {name}{note}",
            f"lsof -nP -iTCP -sTCP:{name}   # who holds them (macOS, as root)",
        )
        windows = (
            f"Get-NetTCPConnection -State {cmdlet} | Group-Object OwningProcess | "
            f"Sort-Object Count -Descending{note}",
        )
    return Elsewhere(bsd, (*windows, f"netstat -ano -p tcp | findstr {shown}   # pid last"))


def descriptors_elsewhere(pid: int) -> Elsewhere:
    """How many descriptors ``pid`` holds, and its limit, on macOS/BSD and on Windows (where
    a process counts handles, and sockets are among them)."""
    return Elsewhere(
        (
            f"lsof -p {pid} | wc -l   # open files (macOS)",
            f"procstat -f {pid} | wc -l   # open files (FreeBSD)",
            f"procstat -l {pid} | grep openfiles   # its limit (FreeBSD)",
            "launchctl limit maxfiles   # the default limit (macOS)",
        ),
        # No open-file limit to run into there; a handle count that only grows is the leak.
        (f"Get-Process -Id {pid} | Select-Object Id, ProcessName, HandleCount   # grows?",),
    )


def reach_elsewhere(address: str, port: int | None) -> Elsewhere:
    """Whether ``address`` answers, and the way there, on macOS/BSD and on Windows."""
    bsd = [f"route -n get {address}"]
    windows = [f"Find-NetRoute -RemoteIPAddress {address}"]
    if port is not None:
        bsd.append(f"nc -vz -w 3 {address} {port}   # does it answer by hand?")
        windows.append(f"Test-NetConnection {address} -Port {port}")
    windows.append(f"tracert -d {address}")
    return Elsewhere(tuple(bsd), tuple(windows))


def peers_text(
    index: SnapshotIndex,
    local_ports: Iterable[int | None],
    peers: Counter[Destination],
    total: int,
) -> str:
    """``mostly to 10.0.0.5:6379 (2,900)`` where this host's ends are clients (their peers are
    where they connect to), ``mostly from ...`` where they are a server's (their peers are its
    clients), ``mostly with ...`` where both or neither can be told; ``all`` for ``mostly``
    where those named hold all ``total`` sockets. A local port is a server's when a listener
    here has it or it lies outside the ephemeral range, from which a client's port is drawn;
    ``local_ports`` may repeat."""
    (low, high), _ = port_range_or_default(index.snapshot.sysctls)
    sides = {
        port in index.listeners_by_port or not low <= port <= high
        for port in set(local_ports)
        if port is not None
    }
    word = "with" if len(sides) != 1 else "from" if sides.pop() else "to"
    return share_text(peers, total, word)


def widest_counts(counts: Iterable[ReportedCount]) -> dict[TcpState, ReportedCount]:
    """Per state the largest count a paste printed (its widest selection, or the latest of a
    growing series); the first printed where two are equal. Counts of no one state are left
    out."""
    best: dict[TcpState, ReportedCount] = {}
    for count in counts:
        if count.state is None:
            continue
        known = best.get(count.state)
        if known is None or count.sockets > known.sockets:
            best[count.state] = count
    return best


def count_holders(index: SnapshotIndex, count: ReportedCount) -> tuple[int, ...]:
    """The processes a pasted count is about: named by its selection, or the one process
    holding every socket the paste listed in that state beside it; ``()`` when neither says."""
    if count.pids:
        return count.pids
    if count.state is None:  # rows in any state: the listing beside it is no sample of them
        return ()
    listed = index.sockets(count.state)
    holders = {sock.pids for sock in listed}
    if len(holders) == 1 and listed:
        only = holders.pop()
        if only:
            return only
    return ()


def counted_beyond_listing(
    index: SnapshotIndex, state: TcpState, pids: tuple[int, ...], warning: int
) -> ReportedCount | None:
    """The paste's own count of ``state`` for the holder ``pids`` when it is larger than the
    rows listed and reaches ``warning``: the counted finding then speaks for the listed rows
    too (they are a sample of it), and a finding about the few rows alone -- "3, below the 10
    that warn" beside "the paste counts 30" -- would contradict it."""
    count = widest_counts(index.snapshot.reported).get(state)
    if count is None or count.sockets <= len(index.sockets(state)) or count.sockets < warning:
        return None
    return count if count_holders(index, count) == pids else None


def paste_count_evidence(count: ReportedCount) -> list[Evidence]:
    """A count the paste printed itself, as evidence: the number, the command that printed it,
    what it selected and its earlier counts."""
    evidence = [
        Evidence(
            "paste_count",
            count.count,
            f"printed by the paste's own `{count.command}`"
            + (
                f", {number(count.sockets)} sockets after ss's header line"
                if count.sockets != count.count
                else ""
            ),
        )
    ]
    if count.selects is not None:
        evidence.append(Evidence("paste_selection", count.selects, "what the command selected"))
    if count.earlier:
        shown = ", ".join(str(value) for value in (*count.earlier, count.count))
        evidence.append(Evidence("paste_counts", shown, "the same command's counts, oldest first"))
    return evidence


def local_peers(
    index: SnapshotIndex, sockets: Iterable[Socket], peer_state: TcpState
) -> tuple[int, ...]:
    """The pids holding the other end of ``sockets`` where that end is on this host too (a
    connection between two local processes, over loopback or a local address) and is in
    ``peer_state``; lowest first, () when no other end is here."""
    table = index.table
    if table is not None and peer_state in index.table_states:
        # The peer state is columns: the sockets' rows found by their cookies, their other
        # ends by one join (not every socket of that state made an object to look them up).
        sockets = list(sockets)
        cookies = [sock.cookie for sock in sockets if sock.cookie is not None]
        if len(cookies) == len(sockets):
            import numpy as np

            rows = np.flatnonzero(np.isin(table.columns.cookie, cookies))
            return TablePeers(index, table, rows, index.table_states[peer_state]).of(rows)
    by_client_end: dict[Endpoint, Socket | list[Socket]] | None = None
    # Whether each remote address is this host's, by the address object: sources share them
    # between sockets, and every one is alive (its socket holds it) while this runs.
    local_by_id: dict[int, bool] = {}
    listening = index.listeners_by_port
    pids: set[int] = set()
    for sock in sockets:
        local, remote = sock.remote, sock.local  # the other end's, seen from there
        address = local.address
        is_local = local_by_id.get(id(address))
        if is_local is None:
            is_local = local_by_id[id(address)] = index.is_local(address)
        if not is_local:
            continue
        if by_client_end is None:  # built only once a peer could be here
            by_client_end = index.by_client_end(peer_state)
        # index.client_end(local, remote), written out: this runs once per socket.
        found = by_client_end.get(remote if local.port in listening else local)
        if found is None:
            continue
        for other in found if isinstance(found, list) else (found,):
            # Identity first: sources share endpoints (a listening port's), so most are.
            if (other.local is local or other.local == local) and (
                other.remote is remote or other.remote == remote
            ):
                pids.update(other.pids)
    return tuple(sorted(pids))


# --- the same counts over a table's columns (the table checks of the closing-state rules) ---


def held_groups_of_table(
    table: SocketTable, rows: npt.NDArray[np.intp]
) -> list[tuple[tuple[int, ...], npt.NDArray[np.intp]]]:
    """``rows`` grouped by the normal form of their holders' pids (:func:`pids_key`), as
    the object rules group sockets: first by the pid tuple as the source gave it, then by
    its normal form. The groups in the order their first row comes; within one, the rows of
    each given tuple together, those tuples in the order their first row comes."""
    import numpy as np

    if not len(rows):
        return []
    holders = table.holders[rows]
    numbers, first = np.unique(holders, return_index=True)
    tuple_first: dict[tuple[int, ...], int] = {}
    for number_at, at in zip(numbers.tolist(), first.tolist(), strict=True):
        pids = table.groups[number_at]
        tuple_first[pids] = min(at, tuple_first.get(pids, at))
    key_first: dict[tuple[int, ...], int] = {}
    for pids, at in tuple_first.items():
        key = pids_key(pids)
        key_first[key] = min(at, key_first.get(key, at))
    tuple_rank = np.zeros(len(table.groups), dtype=np.intp)
    key_rank = np.zeros(len(table.groups), dtype=np.intp)
    keys: dict[int, tuple[int, ...]] = {}
    for number_at in numbers.tolist():
        pids = table.groups[number_at]
        key = pids_key(pids)
        tuple_rank[number_at] = tuple_first[pids]
        key_rank[number_at] = at = key_first[key]
        keys[at] = key
    ranks = key_rank[holders]
    order = np.lexsort((np.arange(len(rows)), tuple_rank[holders], ranks))
    ranks = ranks[order]
    starts = np.flatnonzero(np.concatenate(([True], ranks[1:] != ranks[:-1])))
    ends = np.append(starts[1:], len(order))
    ordered = rows[order]
    return [
        (keys[int(ranks[start])], ordered[start:end])
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


# How many destinations a finding names (wording.top_destinations, most_common_text).
_NAMED_DESTINATIONS = 3


def destinations_of_table(columns: DumpColumns, rows: npt.NDArray[np.intp]) -> Counter[Destination]:
    """The sockets at ``rows`` per :func:`destination` of their remote end, as far as a
    finding names them: the first three :func:`wording.top_destinations` and
    ``most_common_text`` (through ``by_host_if_ports_vary``) would rank, not every
    destination. Where no destination repeats, the counts per host they fold into; else the
    three with the largest counts, ties by their text. A server's CLOSE_WAIT have one
    destination per client port: tens of thousands of endpoints made for three names."""
    import numpy as np

    from tcphealth.columnar import AddressTable, lexsorted_runs

    if not len(rows):
        return Counter()
    family, high, low = columns.family[rows], columns.dst_high[rows], columns.dst_low[rows]
    # destination(): a v4-mapped IPv6 address (::ffff:a.b.c.d) counted as the IPv4 one.
    mapped = (family == 10) & (high == 0) & (low >> np.uint64(32) == 0xFFFF)
    if bool(mapped.any()):
        family = np.where(mapped, np.uint8(2), family)
        high = np.where(mapped, (low & np.uint64(0xFFFFFFFF)) << np.uint64(32), high)
        low = np.where(mapped, np.uint64(0), low)
    keys: list[npt.NDArray[np.generic]] = [family, high, low, columns.dport[rows]]
    order, changed = lexsorted_runs(keys[::-1])
    starts = np.flatnonzero(changed)
    counts = np.diff(np.append(starts, len(order)))
    firsts = order[starts]
    addresses = AddressTable()
    found: Counter[Destination] = Counter()
    if len(counts) > 1 and int(counts.max()) == 1:
        # by_host_if_ports_vary's fold, done here: the hosts, each with its sockets.
        by_host: list[npt.NDArray[np.generic]] = [family[firsts], high[firsts], low[firsts]]
        host_order, new_host = lexsorted_runs(by_host[::-1])
        host_starts = np.flatnonzero(new_host)
        host_counts = np.diff(np.append(host_starts, len(host_order))).tolist()
        at = firsts[host_order[host_starts]]
        for kind, top, bottom, count in zip(
            family[at].tolist(), high[at].tolist(), low[at].tolist(), host_counts, strict=True
        ):
            found[Endpoint(addresses.get(kind, top, bottom), None)] += count
        return found
    ports = columns.dport[rows]
    ranked = False
    if len(counts) > _NAMED_DESTINATIONS:
        least = np.partition(counts, len(counts) - _NAMED_DESTINATIONS)[-_NAMED_DESTINATIONS]
        kept = np.flatnonzero(counts >= least)  # in the columns' order, as before
        if len(kept) > _NAMED_DESTINATIONS:
            # A server's clients tied at the third count (each port connected to two
            # listeners, say): only the first by text are named, so only those become
            # objects (ranked once, by named_destinations, as every sentence would).
            ranked = True
            above = np.flatnonzero(counts > least)
            tied = np.flatnonzero(counts == least)
            wanted = _NAMED_DESTINATIONS - len(above)
            at = tied[_first_by_text(addresses, family, high, low, ports, firsts[tied], wanted)]
            kept = np.concatenate((above, at))
        counts, firsts = counts[kept], firsts[kept]
    for kind, top, bottom, port, count in zip(
        family[firsts].tolist(),
        high[firsts].tolist(),
        low[firsts].tolist(),
        ports[firsts].tolist(),
        counts.tolist(),
        strict=True,
    ):
        found[Endpoint(addresses.get(kind, top, bottom), port)] += count
    return named_destinations(found, _NAMED_DESTINATIONS) if ranked else found


def _first_by_text(
    addresses: AddressTable,
    family: npt.NDArray[np.generic],
    high: npt.NDArray[np.generic],
    low: npt.NDArray[np.generic],
    port: npt.NDArray[np.generic],
    at: npt.NDArray[np.intp],
    limit: int,
) -> list[int]:
    """The positions in ``at`` (rows of distinct destinations) of the ``limit`` whose
    :func:`wording.destination_text` comes first, each address written out once (a server's
    clients share a few): no Endpoint for the thousand a finding does not name."""
    written: dict[tuple[int, int, int], str] = {}
    texts: list[str] = []
    ends = zip(
        family[at].tolist(), high[at].tolist(), low[at].tolist(), port[at].tolist(), strict=True
    )
    for kind, top, bottom, port_number in ends:
        shown = written.get((kind, top, bottom))
        if shown is None:
            address = addresses.get(kind, top, bottom)
            shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
            written[(kind, top, bottom)] = shown
        texts.append(f"{shown}:{port_number}")
    return heapq.nsmallest(limit, range(len(texts)), key=texts.__getitem__)


def local_ports_of_table(columns: DumpColumns, rows: npt.NDArray[np.intp]) -> Counter[int | None]:
    """The sockets at ``rows`` per local port."""
    import numpy as np

    ports, counts = np.unique(columns.sport[rows], return_counts=True)
    return Counter(dict(zip(ports.tolist(), counts.tolist(), strict=True)))


def group_numbers(
    table: SocketTable, groups: list[tuple[tuple[int, ...], npt.NDArray[np.intp]]]
) -> npt.NDArray[np.intp]:
    """Per row of ``table``, the position of its group among ``groups`` (as
    :func:`held_groups_of_table` gives them); -1 for a row in none."""
    import numpy as np

    found = np.full(len(table), -1, dtype=np.intp)
    for at, (_, members) in enumerate(groups):
        found[members] = at
    return found


def ends_by_group(
    group_of: npt.NDArray[np.intp],
    mine: npt.NDArray[np.intp],
    my_runs: npt.NDArray[np.intp],
    theirs: npt.NDArray[np.intp],
    their_runs: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The other ends of each group's rows, from :func:`tcphealth.columnar.other_ends`'s
    answer (rows and runs of both sides, in run order): the group numbers (``group_of[row]``,
    -1 for a row in none) and the other end's row, pair by pair. One pass for every group,
    where a lookup per group would sort both sides once per group."""
    import numpy as np

    empty = np.zeros(0, dtype=np.intp)
    if not len(mine) or not len(theirs):
        return empty, empty
    first = np.searchsorted(my_runs, their_runs, side="left")
    last = np.searchsorted(my_runs, their_runs, side="right")
    single = (last - first) == 1  # one row of this side per connection: every real one
    groups = [group_of[mine[first[single]]]]
    others = [theirs[single]]
    for at in np.flatnonzero(~single).tolist():  # a key several rows share
        for row in mine[first[at] : last[at]].tolist():
            groups.append(np.array([group_of[row]], dtype=np.intp))
            others.append(theirs[at : at + 1])
    group, other = np.concatenate(groups), np.concatenate(others)
    kept = group >= 0
    return group[kept], other[kept]


class TablePeers:
    """:func:`local_peers` over a table: the rows of one state matched once with the other
    ends on this host (the rows of ``peer_code`` a named holder holds) by one join of their
    keys (:func:`tcphealth.columnar.other_ends`); :meth:`of` gives the peers' pids for any
    subset of the first state's rows."""

    def __init__(
        self, index: SnapshotIndex, table: SocketTable, rows: npt.NDArray[np.intp], peer_code: int
    ) -> None:
        import numpy as np

        from tcphealth.columnar import AddressTable, distinct_rows_first, other_ends

        columns = table.columns
        others = np.flatnonzero((columns.state == peer_code) & table.named()[table.holders])
        mine, my_runs, theirs, their_runs = other_ends(columns, rows, others)
        # The join as other_ends gave it, for a rule that reads it beside the peers (closing's
        # CLOSE_WAIT relayed): one join of the two states, not two.
        self.others = others
        self.ends = (mine, my_runs, theirs, their_runs)
        if len(mine):
            # local_peers looks only where the other end's address is this host's.
            values, _, first = distinct_rows_first(
                [columns.family[mine], columns.dst_high[mine], columns.dst_low[mine]]
            )
            addresses = AddressTable()
            foreign = [
                at
                for at, (kind, high, low) in zip(first, zip(*values, strict=True), strict=True)
                if not index.is_local(addresses.get(kind, high, low))
            ]
            if foreign:
                gone = np.zeros(len(mine), dtype=np.bool_)
                for at in foreign:
                    row = mine[at]
                    gone |= (
                        (columns.family[mine] == columns.family[row])
                        & (columns.dst_high[mine] == columns.dst_high[row])
                        & (columns.dst_low[mine] == columns.dst_low[row])
                    )
                mine, my_runs = mine[~gone], my_runs[~gone]
        self._table = table
        self._mine = mine
        self._my_runs = my_runs
        self._theirs = theirs
        self._their_runs = their_runs
        self._their_holders = table.holders[theirs]

    def by_group(self, group_of: npt.NDArray[np.intp], groups: int) -> list[tuple[int, ...]]:
        """:meth:`of` the rows of each of ``groups`` groups at once (``group_of[row]``: the
        group of a row of the first state, -1 for none)."""
        import numpy as np

        found: list[set[int]] = [set() for _ in range(groups)]
        group, other = ends_by_group(
            group_of, self._mine, self._my_runs, self._theirs, self._their_runs
        )
        if len(group):
            holders = np.uint64(len(self._table.groups))
            pairs = np.unique(group.astype(np.uint64) * holders + self._table.holders[other])
            for key in pairs.tolist():
                found[key // int(holders)].update(self._table.groups[key % int(holders)])
        return [tuple(sorted(pids)) for pids in found]

    def of(self, rows: npt.NDArray[np.intp]) -> tuple[int, ...]:
        """The pids holding the other end of any of ``rows``, lowest first."""
        import numpy as np

        if not len(self._mine):
            return ()
        runs = self._my_runs[np.isin(self._mine, rows)]
        numbers = np.unique(self._their_holders[np.isin(self._their_runs, runs)])
        groups = self._table.groups
        return tuple(sorted({pid for at in numbers.tolist() for pid in groups[at]}))


def elision_among(index: SnapshotIndex, state: TcpState, pids: tuple[int, ...]) -> Elision | None:
    """The paste's mark for rows it left out, where the rows beside it are in ``state`` and
    held by one of ``pids`` (or, for ``()``, by no process the paste names): those rows are a
    sample of more, so a count of them is a floor, never proof of few."""
    for elision in index.snapshot.elisions:
        if state not in elision.states:
            continue
        if (set(pids) & set(elision.pids)) if pids else not elision.pids:
            return elision
    return None


# --- the kernel's log, pasted -----------------------------------------------------------------
#
# A kernel log line proves that a limit WAS hit at the time of the line; it says nothing of
# now. The findings built on one take the severity their rule gives at the ceiling, unless the
# paste's own reading of the same limit (sockstat, the conntrack count, a TIME_WAIT count)
# shows room: then the limit was hit, the look shows it is not now, and the paste does not say
# which came first -- WARNING. A limit is where sockets end up, so a finding from the log
# names the sockets in the paste that feed it and says the limit is their consequence.


def pile(index: SnapshotIndex, state: TcpState) -> int:
    """The sockets in ``state`` the source shows: listed, or counted by the paste itself
    (a summary, ``| wc -l``), whichever is more."""
    return max(len(index.sockets(state)), index.snapshot.state_counts.get(state.value, 0))


def logged(index: SnapshotIndex, *events: KernelEvent) -> tuple[KernelMessage, ...]:
    """The pasted kernel log lines of these events, in the order the paste shows them."""
    return tuple(message for message in index.snapshot.kernel_log if message.event in events)


def _stamp_text(stamp: str) -> str:
    """A dmesg uptime stamp is seconds since boot; the other forms are clock times."""
    seconds = stamp.strip()
    if seconds.replace(".", "", 1).isdigit():
        return f"{int(float(seconds)):,} s after boot"  # whole seconds, as uptime counts
    return seconds


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def logged_when(message: KernelMessage) -> str:
    """When the log says it happened, as printed: "at Mon Nov 16 14:55:04 2020", "between ...
    and ...", or "at a time the paste does not show"; and how long before the capture, where
    both are instants the paste printed."""
    first = message.first_seen
    last = message.last_seen
    if first is None and last is None:
        return "at a time the paste does not show"
    if first is not None and last is not None and last != first:
        when = f"between {_stamp_text(first)} and {_stamp_text(last)}"
    else:
        when = f"at {_stamp_text(first or last or '')}"
    before = message.seconds_before_capture
    if before is not None:
        side = "before" if before >= 0 else "after"
        which = "the last " if message.count > 1 else ""
        when += f", {which}{_duration(before)} {side} the capture"
    return when


def logged_times(message: KernelMessage) -> str:
    return "once" if message.count == 1 else f"{number(message.count)} times"


def log_evidence(message: KernelMessage, meaning: str) -> tuple[Evidence, ...]:
    """The line quoted, how many times the paste shows it and when, and the messages the
    kernel said it did not print."""
    evidence = [
        Evidence(
            "kernel_log",
            message.text,
            f"the kernel's own line, {logged_times(message)} in the paste, "
            f"{logged_when(message)}, first on line {message.line}: {meaning}",
        )
    ]
    if message.suppressed:
        evidence.append(
            Evidence(
                "net_ratelimit_suppressed",
                message.suppressed,
                "net messages the kernel did not print (rate-limited; of this kind or another)",
            )
        )
    return tuple(evidence)


def error_line(index: SnapshotIndex, kind: ErrorKind) -> ErrorLine | None:
    """The paste's own error line of this kind (the first, with how many there are), if any."""
    return next((line for line in index.snapshot.error_lines if line.kind is kind), None)


def error_evidence(line: ErrorLine, meaning: str) -> Evidence:
    """An error line the paste holds, quoted as the paste shows it, as evidence."""
    times = "once" if line.count == 1 else f"{number(line.count)} times"
    return Evidence(
        "error_line",
        line.text,
        f"the paste's own error line, {times} in it, first on line {line.line}: {meaning}",
    )


def ports_ran_out(index: SnapshotIndex, severity: Severity) -> tuple[Severity, Evidence | None]:
    """A finding about ephemeral ports running out, where the paste's own error line says a
    connect() already found none (EADDRNOTAVAIL): critical, with the line as evidence. The
    finding is at the warning level at least (its own thresholds met), so the ports it is
    about are the likely ones the line ran out of."""
    line = error_line(index, ErrorKind.LOCAL_PORTS)
    if line is None:
        return severity, None
    evidence = error_evidence(
        line,
        "a connect() found no free local port (EADDRNOTAVAIL) -- most likely this supply, "
        "the one the paste shows filling; the line does not name its destination",
    )
    return Severity.CRITICAL, evidence


PORTS_RAN_OUT = "; the paste's own error line says a connect() already found none free"


STILL_UNKNOWN = (
    "whether the limit is still hit: the log says it was, at the time of the line; the same "
    "reading taken now, twice a minute apart, settles it"
)


# --- ESTABLISHED piled toward one destination (the piled rule's sockets, the reported rule's
# counts): one reading, said alike from rows and from a paste's number.

PILE_MEANING = (
    "one client holding that many connections open to one server is not reusing them -- either "
    "that many requests are in flight at once, or connections are opened and never closed (a "
    "leak, such as response bodies or sessions left open)"
)
PILE_FIX = (
    "On the client: close every response and connection it opens, and send its requests "
    "through a pool bounded per destination (the fix is the client's, not the server's)."
)
PILE_IDLE_UNKNOWN = (
    "whether they are idle (left open: a leak) or busy (that many requests in flight): the "
    "source gives no idle times; tcp_info's lastsnd/lastrcv (ss -tni) settle it"
)


def pile_steps(destination_text: str) -> tuple[str, ...]:
    """What to run next about a pile toward one destination: each connection's idle times."""
    return (
        f"ss -tnpi state established dst {destination_text}   # lastsnd/lastrcv: the ones "
        "idle for long were left open",
        PILE_FIX,
    )


def pile_candidate(index: SnapshotIndex, sock: Socket) -> bool:
    """Whether an ESTABLISHED socket may be one of a client's pile toward one destination: its
    peer is one known host and port, and its local end is no listener's (a server's accepted
    connections come from many clients, each its own peer)."""
    remote = sock.remote
    if remote.port is None or remote.is_unspecified or hides_host(remote.name):
        return False
    return sock.local.port not in index.listeners_by_port


def established_piles(
    index: SnapshotIndex, sockets: Iterable[Socket], at_least: int
) -> dict[tuple[tuple[int, ...], Destination], list[Socket]]:
    """ESTABLISHED client connections by (holders, destination), the groups of at least
    ``at_least``, in the order first met."""
    groups: dict[tuple[tuple[int, ...], Destination], list[Socket]] = {}
    for sock in sockets:
        if pile_candidate(index, sock):
            key = (pids_key(sock.pids), destination(sock.remote))
            groups.setdefault(key, []).append(sock)
    return {key: members for key, members in groups.items() if len(members) >= at_least}
