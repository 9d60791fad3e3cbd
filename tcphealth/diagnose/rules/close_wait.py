"""CLOSE_WAIT: the peer has closed, and something on this host has not.

Three cases, told apart by who holds the socket:

* a process holds it (a descriptor): that application never closed it. Its receive queue says
  how -- 1 byte is the peer's FIN alone (it stopped reading), 0 means it read to end-of-file and
  forgot close() (a descriptor leak), more means data it never read.
* no descriptor holds it, and a listener owns the port: the connection was never accepted; the
  peer sent its request, waited, and gave up. The listener's process is not calling accept().
* the source does not say who holds it: we report the numbers and say what we could not check.

CLOSE_WAIT has no timer (KERNEL.md): only the application, its exit, or ``ss -K`` ends it.
So a few below the warning count are still said (close-wait-age-decides, INFO) where their age
is unknown or past a slow close: how long they stay decides between a moment and a leak.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import (
    Destination,
    SnapshotIndex,
    TableRows,
    destination,
    owned_by_fd,
)
from tcphealth.diagnose.lasting import AgeSplit, age_evidence, split_by_age
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.shared import (
    Elsewhere,
    TablePeers,
    assess_accept_queue,
    counted_beyond_listing,
    descriptors_elsewhere,
    destinations_of_table,
    group_numbers,
    held_groups_of_table,
    listener_owner,
    listener_subject,
    listing_elsewhere,
    local_peers,
    local_ports_of_table,
    overflow_counter_evidence,
    owner_next_steps,
    owner_unchecked,
    peers_text,
    platform_steps,
)
from tcphealth.diagnose.timeline import ConnectionKey, connection_key, kernel_age_floor
from tcphealth.diagnose.wording import (
    attribution_gaps,
    level,
    number,
    percent,
    pid_evidence,
    pids_key,
    process_subject,
    share_text,
    sockets_text,
    top_destinations,
    who,
)
from tcphealth.model import (
    Blame,
    Endpoint,
    Evidence,
    Finding,
    OwnerSource,
    Severity,
    Snapshot,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    import numpy as np
    import numpy.typing as npt

    from tcphealth.columnar import DumpColumns, SocketTable

_CLOSE_WAIT_CODE, _FIN_WAIT2_CODE = 8, 5  # the kernel's TCP_CLOSE_WAIT, TCP_FIN_WAIT2

# The receive-queue reading of a held CLOSE_WAIT socket, most telling first: a leak (0) is the
# surest diagnosis, then "not reading" (the FIN alone), then unread data, then unknown.
NOT_CLOSED = "close-wait-not-closed"
NOT_READING = "close-wait-not-reading"
UNREAD_DATA = "close-wait-unread-data"
HELD = "close-wait-held"
UNACCEPTED = "close-wait-unaccepted"
OWNER_UNKNOWN = "close-wait-owner-unknown"
SLOW_CLOSE = "close-wait-slow-close"  # from a series: closed, only late
# Client connections the servers closed while idle, seen replaced between a paste's listings.
PEER_IDLE_CLOSE = "close-wait-peer-idle-close"
# Fewer than close_wait_warning, whose age the input does not give or shows lasting: no timer
# ends CLOSE_WAIT, so whether a few are a moment or a leak is decided by how long they stay.
AGE_DECIDES = "close-wait-age-decides"
_KIND_ORDER = (NOT_CLOSED, NOT_READING, UNREAD_DATA, HELD)

# The same readings for sockets too young to call the application's silence a leak (see
# Thresholds.close_wait_leak_seconds): what the queue shows, without "never" or "stopped".
_YOUNG_READING = {
    NOT_CLOSED: "it read each to end-of-file and has not called close() yet",
    NOT_READING: "it has not read from them since the peer's FIN arrived",
    UNREAD_DATA: "they hold data it has not read",
    HELD: "the source's receive queue does not say whether it reads them",
}

_KIND_READING = {
    NOT_CLOSED: (
        "it read each to end-of-file and never called close(), a descriptor leak",
        "read to end-of-file, not closed (receive queue 0)",
    ),
    NOT_READING: (
        "it has not read from them since the peer's FIN arrived, so it stopped reading "
        "these connections",
        "not read since the FIN (receive queue 1 byte: the FIN)",
    ),
    UNREAD_DATA: (
        "they still hold data it never read, so it stopped reading before the peer finished",
        "unread data besides the FIN (receive queue over 1 byte)",
    ),
    HELD: (
        "the source's receive queue does not say whether it stopped reading or forgot close(), "
        "so that could not be told",
        "receive queue not reported, or empty where the FIN is not counted in it (BSD, macOS)",
    ),
}


def reading_of_queue(queued: int | None, fin_in_queue: bool = True) -> str:
    """Which of the four readings a held CLOSE_WAIT socket gives whose receive queue holds
    ``queued`` bytes (None: the source did not say). Linux counts the peer's FIN as a byte
    until it is read; BSD and macOS count data only (``fin_counted`` False), so there an empty
    queue cannot tell a FIN read from one not read, and any byte is data."""
    if queued is None:
        return HELD
    if not fin_in_queue:
        return HELD if queued == 0 else UNREAD_DATA
    if queued == 0:
        return NOT_CLOSED
    if queued == 1:
        return NOT_READING
    return UNREAD_DATA


# Platforms whose Recv-Q counts the data alone, not the FIN (netstat on BSD and macOS).
_DATA_ONLY_QUEUES = frozenset({"darwin", "freebsd", "openbsd", "netbsd"})


def fin_counted(index: SnapshotIndex) -> bool:
    """Whether the receive queues of this snapshot count the peer's FIN (Linux does)."""
    return index.snapshot.host.platform not in _DATA_ONLY_QUEUES


@dataclass
class _Held:
    """CLOSE_WAIT sockets held by one set of pids."""

    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    destinations: Counter[Destination] = field(default_factory=Counter)
    local_ports: Counter[int | None] = field(default_factory=Counter)
    longest_idle_ms: int | None = None
    # The longest any of them has been in CLOSE_WAIT at least (tcp_info's floor), in seconds.
    oldest_seconds: float | None = None

    @classmethod
    def of(cls, sockets: list[Socket], fin_in_queue: bool = True) -> _Held:
        """The group of ``sockets``. One leak can be tens of thousands of sockets: they are
        counted in C loops (map, Counter), and each distinct receive queue judged once."""
        kinds: Counter[str] = Counter()
        for queued, count in Counter(map(_RECV_QUEUE, sockets)).items():
            kinds[reading_of_queue(queued, fin_in_queue)] += count
        infos = filter(_KNOWN, map(_TCP_INFO, sockets))
        return cls(
            count=len(sockets),
            kinds=kinds,
            destinations=Counter(map(destination, map(_REMOTE, sockets))),
            local_ports=Counter(map(_LOCAL_PORT, sockets)),
            longest_idle_ms=max(filter(_KNOWN, map(_LAST_DATA_RECV, infos)), default=None),
            oldest_seconds=max(
                (age for age in map(kernel_age_floor, sockets) if age is not None), default=None
            ),
        )

    @classmethod
    def of_table(
        cls, columns: DumpColumns, rows: npt.NDArray[np.intp], fin_in_queue: bool = True
    ) -> _Held:
        """:meth:`of` the sockets at ``rows`` of a table, counted over its columns."""
        import numpy as np

        kinds: Counter[str] = Counter()
        queued, counts = np.unique(columns.rqueue[rows], return_counts=True)
        for value, count in zip(queued.tolist(), counts.tolist(), strict=True):
            kinds[reading_of_queue(value, fin_in_queue)] += count
        with_info = rows[columns.has_info[rows]]
        return cls(
            count=len(rows),
            kinds=kinds,
            destinations=destinations_of_table(columns, rows),
            local_ports=local_ports_of_table(columns, rows),
            longest_idle_ms=(
                int(columns.last_data_recv_ms[with_info].max()) if len(with_info) else None
            ),
            # kernel_age_floor: tcp_info's time since the last ACK, CLOSE_WAIT being
            # entered on one.
            oldest_seconds=(
                int(columns.last_ack_recv_ms[with_info].max()) / 1000 if len(with_info) else None
            ),
        )

    def merge(self, other: _Held) -> None:
        self.count += other.count
        self.kinds.update(other.kinds)
        self.destinations.update(other.destinations)
        self.local_ports.update(other.local_ports)
        idle = other.longest_idle_ms
        if idle is not None and (self.longest_idle_ms is None or idle > self.longest_idle_ms):
            self.longest_idle_ms = idle
        age = other.oldest_seconds
        if age is not None and (self.oldest_seconds is None or age > self.oldest_seconds):
            self.oldest_seconds = age

    def dominant_kind(self) -> str:
        return max(_KIND_ORDER, key=lambda kind: (self.kinds[kind], -_KIND_ORDER.index(kind)))


@dataclass(frozen=True)
class _Listings:
    """What a paste's earlier listings of the same CLOSE_WAIT sockets show beside the latest
    (untimed captures: which stayed, went and came, never how long it took)."""

    counts: tuple[int, ...]  # in each listing that showed any, oldest first; the latest last
    closed: int  # of the first listing's, gone by the latest
    added: int  # in the latest and in no earlier listing
    stayed: int  # in the latest and in every listing

    @property
    def accumulating(self) -> bool:
        """None closed, more came: they pile up."""
        return self.closed == 0 and self.added > 0

    def evidence(self) -> list[Evidence]:
        return [
            Evidence(
                "paste_listings",
                ", ".join(map(str, self.counts)),
                "these CLOSE_WAIT in each listing the paste shows, oldest first (how far apart "
                "is not said)",
            ),
            Evidence("closed_between", self.closed, "of the first listing's, gone by the last"),
            Evidence("came_between", self.added, "in the last listing and in no earlier one"),
            Evidence("stayed_in_every_listing", self.stayed, "in the last and every earlier one"),
        ]

    def sentence(self) -> str:
        shown = ", then ".join(map(str, self.counts))
        listed = f" The paste lists them {len(self.counts)} times ({shown})"
        if self.accumulating:
            return (
                f"{listed}: none of the earlier ones was closed and {number(self.added)} more "
                "came, so they pile up."
            )
        if self.closed:
            return (
                f"{listed}: of the {number(self.counts[0])} in the first, "
                f"{number(self.closed)} were gone by the last, so some are closed, only late."
            )
        return f"{listed}, the same ones each time."


def _listings(
    index: SnapshotIndex, sockets: Sequence[Socket], belongs: Callable[[Socket], bool]
) -> _Listings | None:
    """``sockets`` (CLOSE_WAIT of the latest capture) against the earlier listings of the
    paste that showed any CLOSE_WAIT ``belongs`` to the same holder; None without one."""
    earlier = [
        keys
        for listing in index.snapshot.earlier_listings
        if (
            keys := {
                connection_key(sock)
                for sock in listing
                if sock.state is TcpState.CLOSE_WAIT and belongs(sock)
            }
        )
    ]
    if not earlier or not sockets:
        return None
    latest = {connection_key(sock) for sock in sockets}
    return _Listings(
        counts=(*map(len, earlier), len(latest)),
        closed=len(earlier[0] - latest),
        added=len(latest - set().union(*earlier)),
        stayed=len(latest.intersection(*earlier)),
    )


def _accumulate_enough(listings: _Listings | None, count: int) -> bool:
    """Growth a paste shows by listing them again: every earlier one still there, more added
    (at least two by the last)."""
    return listings is not None and listings.accumulating and count >= 2


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    # Grouped by the pid tuple as the source gave it (sources share one tuple between all
    # the sockets of a holder), then by its normal form, once per distinct tuple.
    sockets_as_given: dict[tuple[int, ...], list[Socket]] = {}
    unknown: list[Socket] = []
    for sock in index.sockets(TcpState.CLOSE_WAIT):
        if owned_by_fd(sock):
            same_holders = sockets_as_given.get(sock.pids)
            if same_holders is None:
                sockets_as_given[sock.pids] = [sock]
            else:
                same_holders.append(sock)
        elif not _is_unaccepted(index, sock):
            unknown.append(sock)
    held: dict[tuple[int, ...], _Held] = {}
    members: dict[tuple[int, ...], list[Socket]] = {}
    fin_in_queue = fin_counted(index)
    for pids, sockets in sockets_as_given.items():
        group = _Held.of(sockets, fin_in_queue)
        key = pids_key(pids)
        members.setdefault(key, []).extend(sockets)
        if key in held:
            held[key].merge(group)
        else:
            held[key] = group
    findings = [
        finding
        for pids, group in held.items()
        if (finding := _held_finding(index, pids, group, thresholds, members[pids])) is not None
    ]
    findings.extend(_unaccepted_findings(index, thresholds))
    owner_unknown = _owner_unknown_finding(index, unknown, thresholds)
    if owner_unknown is not None:
        findings.append(owner_unknown)
    return findings


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check` over the CLOSE_WAIT rows of ``table``: each holder's sockets counted over
    the columns, the local peers found by one join with the FIN_WAIT2 rows; objects only for
    the rows no descriptor is known to hold (never accepted, or owner unknown), for a holder
    below close_wait_warning, and for whatever a paste's listings would read (never live).
    The index must have been built from ``table`` with CLOSE_WAIT lazy, else the objects are
    read as by :func:`check`."""
    import numpy as np

    from tcphealth.columnar import OWNER_SOURCES

    if not index.reads_table(table, TcpState.CLOSE_WAIT):
        return check(index, thresholds)
    columns = table.columns
    rows = np.flatnonzero(columns.state == _CLOSE_WAIT_CODE)
    owned = (table.sources[rows] == OWNER_SOURCES.index(OwnerSource.FD)) & table.named()[
        table.holders[rows]
    ]
    fin_in_queue = fin_counted(index)
    held_rows = rows[owned]
    groups = held_groups_of_table(table, held_rows)
    group_of = group_numbers(table, groups)
    peers = TablePeers(index, table, held_rows, _FIN_WAIT2_CODE).by_group(group_of, len(groups))
    unread_over = 1 if fin_in_queue else 0
    findings: list[Finding] = []
    for (pids, members), local in zip(groups, peers, strict=True):
        group = _Held.of_table(columns, members, fin_in_queue)
        unread = columns.rqueue[members]
        unread = unread[unread > unread_over]
        finding = _held_finding(
            index,
            pids,
            group,
            thresholds,
            TableRows(index, members),
            unread=(
                _unread_range(int(unread.min()), int(unread.max()), fin_in_queue)
                if len(unread)
                else []
            ),
            peers=local,
        )
        if finding is not None:
            findings.append(finding)
    findings.extend(_unaccepted_findings(index, thresholds))
    loose = rows[~owned]
    unknown = loose[~np.isin(loose, np.asarray(index.unaccepted_close_wait_rows, dtype=np.intp))]
    owner_unknown = _owner_unknown_finding(index, index.objects_at(unknown), thresholds)
    if owner_unknown is not None:
        findings.append(owner_unknown)
    return findings


def _is_unaccepted(index: SnapshotIndex, sock: Socket) -> bool:
    """The index credited it to a listener as never accepted (see index._attach_to_listeners)."""
    return id(sock) in index.unaccepted_close_wait_ids


def _held_finding(
    index: SnapshotIndex,
    pids: tuple[int, ...],
    group: _Held,
    thresholds: Thresholds,
    sockets: Sequence[Socket],
    *,
    unread: list[Evidence] | None = None,
    peers: tuple[int, ...] | None = None,
) -> Finding | None:
    """The finding of the CLOSE_WAIT ``sockets`` held by ``pids``, counted in ``group``;
    ``unread`` (:func:`unread_evidence`) and ``peers`` (:func:`local_peers` toward FIN_WAIT2)
    where the caller counted them already."""
    severity = level(group.count, thresholds.close_wait_warning, thresholds.close_wait_critical)
    kind = group.dominant_kind()
    listings = _listings(
        index, sockets, lambda sock: owned_by_fd(sock) and pids_key(sock.pids) == pids
    )
    if listings is not None and listings.closed and severity is not None:
        idle = _peer_idle_close(index, sockets, listings, severity, pids)
        if idle is not None:
            return idle
    if severity is None:
        # Fewer than close_wait_warning, but data the application has neither read nor closed
        # is a fact of this one look, whatever their number: say it from a few. So is a pile
        # the paste shows growing from listing to listing.
        if _unread_requests(index, sockets) >= thresholds.close_wait_unread_warning:
            severity, kind = Severity.WARNING, UNREAD_DATA
        elif _accumulate_enough(listings, group.count):
            severity = Severity.WARNING
        elif counted_beyond_listing(
            index, TcpState.CLOSE_WAIT, pids, thresholds.close_wait_warning
        ):
            return None  # the paste's own count of this holder's pile is judged instead
        else:
            return _age_decides(index, sockets, thresholds, pids)
    holder = who(index, pids)
    mixed = "" if group.kinds[kind] == group.count else f" ({number(group.kinds[kind])} of them)"
    # Some seen closed between listings: whatever their age, "never" would be wrong.
    old = is_old_enough(group.oldest_seconds, thresholds) and not (listings and listings.closed)
    if old:
        reading = _KIND_READING[kind][0]
        closed = "this application never did"
    else:
        # One look cannot tell a leak from a slow close: say what the sample shows only.
        reading = _YOUNG_READING[kind]
        closed = "this application has not closed them yet"
    summary = (
        f"{holder} holds {number(group.count)} connections in CLOSE_WAIT: the peers closed and "
        f"{closed}; {reading}{mixed}; "
        f"{peers_text(index, group.local_ports, group.destinations, group.count)}."
        + (listings.sentence() if listings is not None else "")
    )
    evidence: list[Evidence] = [Evidence("close_wait", group.count, "held by a descriptor")]
    if listings is not None:
        evidence.extend(listings.evidence())
    if group.oldest_seconds is not None:
        evidence.append(
            Evidence(
                "oldest_at_least_s",
                round(group.oldest_seconds, 1),
                "in CLOSE_WAIT at least this long (tcp_info: time since the peer's last ACK)",
            )
        )
    for each in _KIND_ORDER:
        if group.kinds[each]:
            evidence.append(Evidence(each, group.kinds[each], _KIND_READING[each][1]))
    evidence.extend(unread_evidence(sockets, fin_counted(index)) if unread is None else unread)
    evidence.extend(top_destinations(group.destinations))
    evidence.extend(pid_evidence(pids))
    if group.longest_idle_ms is not None:
        evidence.append(
            Evidence(
                "longest_idle_s",
                round(group.longest_idle_ms / 1000, 1),
                "since data last arrived on the oldest of them (tcp_info)",
            )
        )
    # Both ends on this host: the process that closed first waits in FIN_WAIT2 for this one.
    if peers is None:
        peers = local_peers(index, sockets, TcpState.FIN_WAIT2)
    if peers:
        evidence.append(
            Evidence(
                "local_peer",
                who(index, peers),
                "holds the other end in FIN_WAIT2, waiting for this process to close",
            )
        )
    process = index.process(pids[0] if pids else None)
    if process is not None and process.open_fds is not None:
        limit = process.fd_soft_limit
        evidence.append(
            Evidence(
                "open_fds",
                process.open_fds,
                None if limit is None else f"soft limit {number(limit)}",
            )
        )
    return Finding(
        code=kind,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids),
        count=group.count,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=_held_next_steps(pids, kind, group, index.snapshot.host.platform),
        unchecked=(
            *(
                attribution_gaps(index, TcpState.CLOSE_WAIT)
                if not index.snapshot.attribution.complete
                else ()
            ),
            *(() if old else (too_young_to_tell(group.oldest_seconds, thresholds),)),
        ),
    )


_TELL = "whether this is a leak or an application slow to close"


def _is_unread(queued: int | None, fin_in_queue: bool = True) -> bool:
    return queued is not None and queued > (1 if fin_in_queue else 0)


def holds_unread_data(sock: Socket, fin_in_queue: bool = True) -> bool:
    """The receive queue holds data besides the FIN (which Linux counts as 1 byte): data that
    came before the peer closed and that nobody has read."""
    return _is_unread(sock.recv_queue, fin_in_queue)


def _server_end(index: SnapshotIndex, sock: Socket) -> bool:
    """This host's end is the server's, as far as the input shows: a listener on its port, or
    a whole local port below the peer's (a client's port is the ephemeral, higher one)."""
    if index.listener_for(sock.local) is not None:
        return True
    local, remote = sock.local.port, sock.remote.port
    return local is not None and not sock.truncated and (remote is None or local < remote)


def _unread_requests(index: SnapshotIndex, sockets: Sequence[Socket]) -> int:
    """Server ends holding data besides the FIN: requests nobody read before the client gave
    up. (A client end's few unread bytes are often the server's goodbye on an idle pooled
    connection -- a TLS close_notify is 31 bytes -- and are not counted.)"""
    fin_in_queue = fin_counted(index)
    return sum(
        1 for sock in sockets if holds_unread_data(sock, fin_in_queue) and _server_end(index, sock)
    )


def unread_evidence(sockets: Sequence[Socket], fin_in_queue: bool = True) -> list[Evidence]:
    """The bytes left unread in the CLOSE_WAIT sockets that hold data besides the FIN."""
    queued = [sock.recv_queue for sock in sockets if holds_unread_data(sock, fin_in_queue)]
    known = [value for value in queued if value is not None]
    if not known:
        return []
    return _unread_range(min(known), max(known), fin_in_queue)


def _unread_range(low: int, high: int, fin_in_queue: bool) -> list[Evidence]:
    return [
        Evidence(
            "unread_bytes",
            number(low) if low == high else f"{number(low)}-{number(high)}",
            "in the receive queue of each"
            + (" (the FIN counts 1)" if fin_in_queue else "")
            + ": sent before the peer closed, never read",
        )
    ]


def is_old_enough(seconds: float | None, thresholds: Thresholds) -> bool:
    """Whether CLOSE_WAIT this old (at least; None: not known) is past a slow close."""
    return seconds is not None and seconds >= thresholds.close_wait_leak_seconds


def too_young_to_tell(seconds: float | None, thresholds: Thresholds) -> str:
    """The fact that would tell a leak from a slow close, and how to get it."""
    limit = f"{thresholds.close_wait_leak_seconds:g} s"
    age = (
        "how long they have been in CLOSE_WAIT is not known"
        if seconds is None
        else f"the oldest has been in CLOSE_WAIT at least {seconds:.1f} s, under {limit}"
    )
    return (
        f"{_TELL}: {age}, so "
        f"follow them for longer than {limit} (tcphealth check --samples 4 --interval "
        f"{max(1, round(thresholds.close_wait_leak_seconds / 3)):g}, or tcphealth watch)"
    )


def _held_next_steps(
    pids: tuple[int, ...], kind: str, group: _Held, platform: str | None
) -> tuple[str, ...]:
    pid = pids[0]
    steps: list[str] = []
    ports = [port for port, _ in group.local_ports.most_common(1) if port is not None]
    if len(group.local_ports) == 1 and ports:
        # All on one local port: a server whose clients hung up.
        steps.append(f"ss -tnpo state close-wait '( sport = :{ports[0]} )'")
    else:
        steps.append(f"ss -tnpo state close-wait | grep -F 'pid={pid},'")
    steps.append(f"ls -l /proc/{pid}/fd | grep -c socket   # descriptors held by sockets")
    steps.append(f"cat /proc/{pid}/limits   # Max open files: how far the leak can go")
    elsewhere = listing_elsewhere(TcpState.CLOSE_WAIT, pid=pid).plus(descriptors_elsewhere(pid))
    advice: list[str] = []
    if kind == NOT_CLOSED:
        advice.append(
            "Find the code path that sees end-of-file (a read returning 0) or an error and "
            "returns without close(): error branches, response bodies never closed, pooled "
            "connections never released."
        )
    elif kind in (NOT_READING, UNREAD_DATA):
        steps.append(
            f"grep State /proc/{pid}/status   # T = stopped, else a thread dump shows where the "
            "reader is blocked"
        )
        elsewhere = Elsewhere(
            (*elsewhere.bsd, f"ps -o pid,stat,wchan -p {pid}   # T = stopped, else where it waits"),
            elsewhere.windows,
        )
        advice.append(
            "Find why the application stopped reading these connections (a stuck worker, a "
            "pool that no longer polls idle connections)."
        )
    linux = (
        *steps,
        *advice,
        "No sysctl shortens CLOSE_WAIT, and restarting the process or `ss -K` (root) only "
        "clears the symptom.",
    )
    return platform_steps(
        platform,
        linux,
        elsewhere=elsewhere.then(
            *advice,
            "No setting shortens CLOSE_WAIT, and restarting the process only clears the symptom.",
        ),
    )


# --- a few, whose age decides ------------------------------------------------------------------


def _age_decides(
    index: SnapshotIndex,
    sockets: Sequence[Socket],
    thresholds: Thresholds,
    pids: tuple[int, ...],
    listener: Socket | None = None,
) -> Finding | None:
    """CLOSE_WAIT below close_wait_warning, held by ``pids`` (``()``: a holder the source does
    not name) or never accepted from ``listener``'s queue, of which some are of unknown age or
    known to have lasted past close_wait_leak_seconds. None when every one was active within
    that time: an application a moment from close() (or accept()), as a live look shows all
    the time."""
    limit = thresholds.close_wait_leak_seconds
    split = split_by_age(
        sockets, limit, index.observed_seconds if index.series_ages is not None else None
    )
    if not split.undecided:
        return None
    count = split.undecided
    destinations: Counter[Destination] = Counter(map(destination, map(_REMOTE, sockets)))
    ports: Counter[int | None] = Counter(map(_LOCAL_PORT, sockets))
    subject = process_subject(index, pids) if pids else _port_subject(index, sockets, ports)
    holder = who(index, pids) if pids else _port_holder(subject)
    closer = "this application" if pids else "whoever holds them"
    them = "it" if count == 1 else "them"
    if listener is not None:
        return _unaccepted_age_decides(index, listener, sockets, split, thresholds)
    if split.lasting:
        oldest_text = f"{split.oldest:.0f} s" if split.oldest is not None else f"{limit:g} s"
        age_text = (
            f"{'it has' if split.lasting == 1 else f'{number(split.lasting)} of them have'} "
            f"waited at least {oldest_text}, past the {limit:g} s a slow close explains: "
            f"{closer} is not closing {'it' if split.lasting == 1 else 'them'}"
            + (
                f" (how long the other {number(split.unknown)} have waited is not known)"
                if split.unknown
                else ""
            )
            + "."
        )
    else:
        age_text = (
            f"the input does not say how long {'it has' if count == 1 else 'they have'} "
            f"waited, and that decides: a moment before close(), or a leak that keeps {them} "
            "for good."
        )
    summary = (
        f"{holder} {'holds' if pids else 'has'} {number(count)} "
        f"{'connection' if count == 1 else 'connections'} in CLOSE_WAIT: the "
        f"{'peer' if count == 1 else 'peers'} closed and {closer} has not yet; "
        f"{peers_text(index, ports, destinations, count)}. That is below the "
        f"{number(thresholds.close_wait_warning)} that warn, but no timer ends CLOSE_WAIT, "
        f"only the application's close(); {age_text}"
    )
    evidence: list[Evidence] = [
        Evidence(
            "close_wait",
            count,
            "held by a descriptor" if pids else "holder not named by the source",
        ),
        Evidence("close_wait_warning", thresholds.close_wait_warning, "warns from this many"),
    ]
    young = f"active within {limit:g} s (tcp_info): not counted, a close may be near"
    evidence.extend(age_evidence(split, "CLOSE_WAIT", limit, young=young))
    fin_in_queue = fin_counted(index)
    kinds = Counter(reading_of_queue(sock.recv_queue, fin_in_queue) for sock in sockets)
    for kind in _KIND_ORDER:
        if kinds[kind]:
            evidence.append(Evidence(kind, kinds[kind], _KIND_READING[kind][1]))
    evidence.extend(top_destinations(destinations))
    evidence.extend(pid_evidence(pids))
    port = next(iter(ports)) if len(ports) == 1 else None
    look = (
        f"ss -tnpo state close-wait '( sport = :{port} )'"
        if port is not None
        else "ss -tnpo state close-wait" + (f" | grep -F 'pid={pids[0]},'" if pids else "")
    )
    unchecked: list[str] = []
    if split.unknown:
        unchecked.append(
            f"{_TELL}: how long they have been in CLOSE_WAIT is not known, and a second "
            f"look after {limit:g} s settles it (the next steps): the same connections still "
            "there are not being closed, gone ones were closing late"
        )
    if not pids:
        unchecked.extend(
            attribution_gaps(index, TcpState.CLOSE_WAIT)
            or ("which process holds these sockets: the source does not name their owners",)
        )
    return Finding(
        code=AGE_DECIDES,
        severity=Severity.INFO,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=count,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"{look}   # again after {limit:g} s: the same ones still there are a leak",
                f"tcphealth check --samples 4 --interval {max(1, round(limit / 3)):g}"
                "   # follows them and says which stay",
            ),
            elsewhere=listing_elsewhere(
                TcpState.CLOSE_WAIT,
                pid=None if port is not None or not pids else pids[0],
                port=port,
                why=f"again after {limit:g} s: the same ones still there are a leak",
            ),
        ),
        unchecked=tuple(unchecked),
    )


def _unaccepted_age_decides(
    index: SnapshotIndex,
    listener: Socket,
    sockets: Sequence[Socket],
    split: AgeSplit,
    thresholds: Thresholds,
) -> Finding:
    """A few connections closed by their clients while they waited in ``listener``'s accept
    queue, which has room: nothing ends them but accept(), so their age decides between an
    accept() a moment away and a listener that stopped accepting."""
    limit = thresholds.close_wait_leak_seconds
    count = split.undecided
    pids = listener_owner(listener)
    owner = who(index, pids) if pids else "the listener's owner"
    endpoint = str(listener.local)
    if split.lasting:
        oldest_text = f"{split.oldest:.0f} s" if split.oldest is not None else f"{limit:g} s"
        age_text = (
            f"{'one has' if split.lasting == 1 else f'{number(split.lasting)} have'} waited "
            f"at least {oldest_text}: {owner} is not calling accept()."
        )
    else:
        age_text = (
            "the input does not say how long they have waited, and that decides: an accept() "
            "a moment away, or a listener that stopped accepting."
        )
    evidence: list[Evidence] = [
        Evidence("close_wait_unaccepted", count, "no descriptor holds them"),
        Evidence("close_wait_warning", thresholds.close_wait_warning, "warns from this many"),
    ]
    evidence.extend(
        age_evidence(split, "CLOSE_WAIT", limit, young=None, unknown="no time in CLOSE_WAIT given")
    )
    top: Counter[Destination] = Counter(destination(s.remote) for s in sockets)
    evidence.extend(top_destinations(top, name="top_client"))
    port = listener.local.port
    return Finding(
        code=AGE_DECIDES,
        severity=Severity.INFO,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=listener_subject(index, listener),
        count=count,
        summary=(
            f"{number(count)} {'connection' if count == 1 else 'connections'} to {endpoint} "
            f"{'sits' if count == 1 else 'sit'} in CLOSE_WAIT without being accepted yet: the "
            "clients closed while waiting in the accept queue. That is below the "
            f"{number(thresholds.close_wait_warning)} that warn, and the queue has room, but "
            f"nothing ends them until {owner} calls accept(); {age_text}"
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -ltn '( sport = :{port} )'   # Recv-Q: connections waiting for accept()",
            f"ss -tno state close-wait '( sport = :{port} )'   # again after {limit:g} s",
        ),
        unchecked=(
            (
                f"{_TELL}: how long they have waited is not known, and a second look after "
                f"{limit:g} s settles it (the next steps)",
            )
            if split.unknown
            else ()
        )
        + owner_unchecked(listener),
    )


def _port_subject(
    index: SnapshotIndex, sockets: Sequence[Socket], ports: Counter[int | None]
) -> Subject:
    """The server port of CLOSE_WAIT whose holder is not named, when they all share one and
    it is a server's (a local listener on it, or a port below each peer's); else the host."""
    if len(ports) != 1 or None in ports or not all(_server_end(index, s) for s in sockets):
        return Subject(kind=SubjectKind.HOST)
    locals_ = {sock.local for sock in sockets}
    if len(locals_) == 1:
        local = next(iter(locals_))
        return Subject(kind=SubjectKind.LISTENER, endpoint=str(local), address=local)
    port = next(iter(ports))
    family = sockets[0].local.address
    anywhere = ipaddress.ip_address("::" if family.version == 6 else "0.0.0.0")
    return Subject(
        kind=SubjectKind.LISTENER, endpoint=f"*:{port}", address=Endpoint(anywhere, port)
    )


def _port_holder(subject: Subject) -> str:
    if subject.kind is SubjectKind.LISTENER:
        return f"The server on {subject.endpoint} (the source names no process)"
    return "This host (the source names no process)"


def _unaccepted_findings(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    sysctls = index.snapshot.sysctls
    for listener_id, sockets in index.unaccepted_close_wait_by_listener.items():
        listener = index.listener_by_id[listener_id]
        queue = assess_accept_queue(listener, sysctls)
        full = queue.is_full(thresholds)
        count = len(sockets)
        severity = (
            Severity.CRITICAL
            if full
            else level(count, thresholds.close_wait_warning, thresholds.close_wait_critical)
        )
        if severity is None:
            few = _age_decides(index, sockets, thresholds, (), listener)
            if few is not None:
                findings.append(few)
            continue
        pids = listener_owner(listener)
        owner = who(index, pids) if pids else "the listener's owner"
        endpoint = str(listener.local)
        queue_text = (
            f"its accept queue holds {number(queue.queued)} for {queue.limit_text()}"
            if queue.queued is not None
            else "its accept queue length is not reported"
        )
        summary = (
            f"{number(count)} connections to {endpoint} sit in CLOSE_WAIT without ever being "
            f"accepted: the clients sent their request and gave up, while {owner} is not "
            f"calling accept() ({queue_text}); this is not a close() leak."
        )
        received = [s.recv_queue for s in sockets if s.recv_queue is not None]
        evidence: list[Evidence] = [
            Evidence("close_wait_unaccepted", count, "no descriptor holds them"),
        ]
        if received:
            low, high = min(received), max(received)
            evidence.append(
                Evidence(
                    "recv_queue_bytes",
                    low if low == high else f"{number(low)}-{number(high)}",
                    "request bytes (plus the FIN) that nobody will read",
                )
            )
        if queue.queued is not None:
            evidence.append(Evidence("accept_queue", queue.queued, "connections waiting"))
        if queue.backlog is not None:
            evidence.append(Evidence("listen_backlog", queue.backlog, None))
        evidence.extend(overflow_counter_evidence(index))
        top: Counter[Destination] = Counter(destination(s.remote) for s in sockets)
        evidence.extend(top_destinations(top, name="top_client"))
        findings.append(
            Finding(
                code=UNACCEPTED,
                severity=severity,
                state=TcpState.CLOSE_WAIT,
                blame=Blame.LOCAL_APPLICATION,
                subject=listener_subject(index, listener),
                count=count,
                summary=summary,
                evidence=tuple(evidence),
                next_steps=owner_next_steps(
                    pids, listener.local.port, index.snapshot.host.platform
                ),
                unchecked=queue.unchecked(endpoint) + owner_unchecked(listener),
            )
        )
    return findings


_REMOTE = operator.attrgetter("remote")
_LOCAL = operator.attrgetter("local")
_LOCAL_PORT = operator.attrgetter("local.port")
_INODE = operator.attrgetter("inode")
_RECV_QUEUE = operator.attrgetter("recv_queue")
_TCP_INFO = operator.attrgetter("tcp_info")
_LAST_DATA_RECV = operator.attrgetter("last_data_recv_ms")
_KNOWN = functools.partial(operator.is_not, None)  # x -> x is not None


_POOL_FIX = (
    "Make the client's pool drop idle connections before the server does (an idle timeout "
    "shorter than the server's, or a check before each reuse), or raise the server's idle "
    "timeout."
)


def _owner_unknown_finding(
    index: SnapshotIndex, sockets: list[Socket], thresholds: Thresholds
) -> Finding | None:
    """CLOSE_WAIT whose holder the source does not name: counted, never attributed by guess."""
    count = len(sockets)
    severity = level(count, thresholds.close_wait_warning, thresholds.close_wait_critical)
    # Judged once per distinct receive queue (tens of thousands of sockets share a few).
    fin_in_queue = fin_counted(index)
    unread = sum(
        n
        for queued, n in Counter(map(_RECV_QUEUE, sockets)).items()
        if _is_unread(queued, fin_in_queue)
    )
    listings = _listings(index, sockets, lambda sock: not owned_by_fd(sock))
    if listings is not None and listings.closed and severity is not None:
        idle = _peer_idle_close(index, sockets, listings, severity, ())
        if idle is not None:
            return idle
    if severity is None:
        # A few, but holding data nobody has read, or growing from listing to listing: facts
        # of the paste itself (see _held_finding).
        if _unread_requests(
            index, sockets
        ) < thresholds.close_wait_unread_warning and not _accumulate_enough(listings, count):
            return _age_decides(index, sockets, thresholds, ()) if sockets else None
        severity = Severity.WARNING
    # Tens of thousands of sockets, counted in C loops (map, Counter) wherever it can be:
    # each remote by its destination; each local endpoint object (the snapshot shares one per
    # listening address, and keeps them all alive) by identity, then judged once.
    destinations: Counter[Destination] = Counter(map(destination, map(_REMOTE, sockets)))
    # An inode the source does not give (None, an ss -tan paste) is not a descriptor: only a
    # known, non-zero inode says a process holds the socket.
    with_descriptor = count - operator.countOf(map(_INODE, sockets), 0)
    with_descriptor -= operator.countOf(map(_INODE, sockets), None)
    local_by_id = {id(local): local for local in map(_LOCAL, sockets)}
    local_ports: Counter[int | None] = Counter()
    near_full_listener = 0
    sysctls = index.snapshot.sysctls
    for key, local_count in Counter(map(id, map(_LOCAL, sockets))).items():
        local = local_by_id[key]
        local_ports[local.port] += local_count
        listener = index.listener_for(local)
        if listener is not None and assess_accept_queue(listener, sysctls).is_full(thresholds):
            near_full_listener += local_count
    evidence: list[Evidence] = [Evidence("close_wait", count, "holder not named by the source")]
    if with_descriptor:
        evidence.append(
            Evidence(
                "with_inode",
                with_descriptor,
                "a descriptor holds them: some process has not closed them",
            )
        )
    if near_full_listener:
        evidence.append(
            Evidence(
                "on_full_listener_port",
                near_full_listener,
                "on the port of a listener with a full accept queue: maybe never accepted",
            )
        )
    if unread:
        evidence.append(Evidence(UNREAD_DATA, unread, _KIND_READING[UNREAD_DATA][1]))
        evidence.extend(unread_evidence(sockets, fin_in_queue))
    oldest = (
        max((age for age in map(kernel_age_floor, sockets) if age is not None), default=None)
        if unread
        else None
    )
    if oldest is not None:
        evidence.append(
            Evidence(
                "oldest_at_least_s",
                round(oldest, 1),
                "in CLOSE_WAIT at least this long (the source's time since the last ACK)",
            )
        )
    if listings is not None:
        evidence.extend(listings.evidence())
    for port, port_count in sorted(local_ports.items(), key=lambda i: (-i[1], i[0] or 0))[:3]:
        evidence.append(Evidence("top_local_port", port, sockets_text(port_count)))
    evidence.extend(top_destinations(destinations))
    unchecked: tuple[str, ...] = attribution_gaps(index, TcpState.CLOSE_WAIT) or (
        "which process holds these sockets: the source does not name their owners",
    )
    unread_text = ""
    if unread:
        # Unread data and no owner: a holder that does not read, or a listener that never
        # accepted them (their request waits in the accept queue). The owner would tell.
        share = "all of them" if unread == count else f"{number(unread)} of them"
        unread_text = (
            f" {share.capitalize()} still hold data sent before the peer closed that nobody "
            "has read: whoever holds them has neither read it nor closed them"
            + (
                f", for at least {oldest:.0f} s"
                if oldest is not None and is_old_enough(oldest, thresholds)
                else ""
            )
            + "."
        )
        unchecked = (
            *unchecked,
            "whether a process holds them without reading, or no process ever accepted them "
            "(a listener not calling accept()): the source shows neither owners nor the "
            "listener's queue (ss -tnp state close-wait as root names the holders, ss -ltn "
            "the listener's Recv-Q)",
        )
    return Finding(
        code=OWNER_UNKNOWN,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.HOST),
        count=count,
        summary=(
            f"{number(count)} connections sit in CLOSE_WAIT: their peers closed and a local "
            "application has not, but the source does not say which one; "
            f"{peers_text(index, local_ports, destinations, count)}.{unread_text}"
            + (listings.sentence() if listings is not None else "")
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                "ss -tnpo state close-wait   # as root, to see the owning processes",
                "ss -tn state close-wait | awk 'NR>1 {print $3}' | sort | uniq -c | sort -rn "
                "| head",
            ),
            elsewhere=listing_elsewhere(TcpState.CLOSE_WAIT),
        ),
        unchecked=unchecked,
    )


def _server_port(index: SnapshotIndex, sockets: Sequence[Socket]) -> int | None:
    """The remote port most of ``sockets`` share, where they are this host's client ends:
    no local listener on their ports, and one server port for at least half of them."""
    if len(sockets) < 2 or any(index.listener_for(sock.local) for sock in sockets):
        return None
    ports = Counter(sock.remote.port for sock in sockets)
    port, count = ports.most_common(1)[0]
    return port if port is not None and count >= 2 and 2 * count >= len(sockets) else None


def _peer_idle_close(
    index: SnapshotIndex,
    sockets: Sequence[Socket],
    listings: _Listings,
    severity: Severity,
    pids: tuple[int, ...],
) -> Finding | None:
    """Client connections in CLOSE_WAIT with the server's FIN alone queued (nothing was due
    to them: they were idle), of which the paste's listings show some closed and others come:
    the servers end idle connections and the client's pool closes its side late. Not a leak;
    the servers' idle timeout is shorter than the pool's."""
    port = _server_port(index, sockets)
    # Nothing but the FIN: 1 byte where the queue counts it (Linux), empty where it does not.
    fin_alone = 1 if fin_counted(index) else 0
    fin_only = sum(1 for sock in sockets if sock.recv_queue == fin_alone)
    if port is None or 2 * fin_only < len(sockets):
        return None
    count = len(sockets)
    destinations: Counter[Destination] = Counter(map(destination, map(_REMOTE, sockets)))
    servers = {dest for dest in destinations if dest.port == port}
    pooled = sum(
        1
        for sock in index.sockets(TcpState.ESTABLISHED)
        if destination(sock.remote) in servers and (not pids or pids_key(sock.pids) == pids)
    )
    holder = (
        who(index, pids) if pids else "the client that holds them (the source does not say which)"
    )
    evidence: list[Evidence] = [
        Evidence("close_wait", count, "client ends, on no local listener's port"),
        Evidence(NOT_READING, fin_only, "the server's FIN alone queued: nothing was due, idle"),
        *listings.evidence(),
    ]
    if pooled:
        evidence.append(
            Evidence("established_to_same_servers", pooled, "still open beside them: a pool")
        )
    evidence.extend(top_destinations(destinations))
    evidence.extend(pid_evidence(pids))
    unchecked = [
        "how late they are closed: the paste does not say how far apart its listings were "
        f"(tcphealth watch shows it, or ss -tno state close-wait '( dport = :{port} )' "
        "taken twice a known time apart)",
    ]
    if not pids:
        unchecked.insert(0, "which process holds them: the source does not name their owners")
    return Finding(
        code=PEER_IDLE_CLOSE,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.REMOTE_PEER,
        subject=process_subject(index, pids) if pids else Subject(kind=SubjectKind.HOST),
        count=count,
        summary=(
            f"{number(count)} client connections sit in CLOSE_WAIT, "
            f"{number(sum(n for dest, n in destinations.items() if dest in servers))} of them "
            f"to port {port}, {number(fin_only)} with only the server's FIN queued: the servers "
            f"closed them while they were idle, and {holder} closes its side only later -- of "
            f"the {number(listings.counts[0])} in the paste's first listing, "
            f"{number(listings.closed)} were gone by its last and {number(listings.added)} new "
            f"had come, so this is a pool closing late, not a leak; "
            f"{share_text(destinations, count, 'to')}."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"ss -tno state close-wait '( dport = :{port} )'   # again in a minute: "
                "replaced, not growing",
                _POOL_FIX,
            ),
            elsewhere=listing_elsewhere(
                TcpState.CLOSE_WAIT,
                port=port,
                local_port=False,
                why="again in a minute: replaced, not growing",
            ).then(_POOL_FIX),
        ),
        unchecked=tuple(unchecked),
    )


# --- over a series: a leak, or a slow close -------------------------------------------------------

_HELD_CODES = frozenset(_KIND_ORDER)


def _held_by_pids(snapshot: Snapshot) -> dict[tuple[int, ...], set[ConnectionKey]]:
    groups: dict[tuple[int, ...], set[ConnectionKey]] = {}
    for sock in snapshot.sockets:
        if sock.state is TcpState.CLOSE_WAIT and owned_by_fd(sock):
            groups.setdefault(pids_key(sock.pids), set()).add(connection_key(sock))
    return groups


def _replaced_ratio(memberships: Sequence[set[ConnectionKey]]) -> float | None:
    """The mean share of one sample's members gone by the next; None without a pair to
    compare."""
    ratios = [
        len(before - after) / len(before)
        for before, after in itertools.pairwise(memberships)
        if before
    ]
    return sum(ratios) / len(ratios) if ratios else None


def _gone_by_last(memberships: Sequence[set[ConnectionKey]]) -> float | None:
    """The share of the first sample's members no longer there in the last; None when the
    first had none, or with fewer than three samples (with two it is the replaced ratio)."""
    if len(memberships) < 3 or not memberships[0]:
        return None
    first, last = memberships[0], memberships[-1]
    return len(first - last) / len(first)


def _churn(replaced: float | None, gone: float | None, ratio: float) -> str | None:
    """How the members were seen to be replaced, worded for the summary, when at least
    ``ratio`` of them were: from one sample to the next, or over the whole window."""
    if replaced is not None and replaced >= ratio:
        return f"{percent(replaced)} of them were replaced from one sample to the next"
    if gone is not None and gone >= ratio:
        return f"{percent(gone)} of those in the first sample were closed by the last"
    return None


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """CLOSE_WAIT held by a process: when the same connections stay through the whole window
    it is a leak (the finding stands, with how long they stayed); when most are replaced from
    one sample to the next the application does close them, only late -- a slow close, one
    severity lower."""
    per_sample = [_held_by_pids(snapshot) for snapshot in window.series]
    latest = per_sample[-1]
    result: list[Finding] = []
    for finding in findings:
        if finding.code not in _HELD_CODES:
            result.append(finding)
            continue
        pids = finding.subject.pids
        members = latest.get(pids, set())
        stayed = sum(1 for key in members if window.stayed_key(key))
        replaced = _replaced_ratio([sample.get(pids, set()) for sample in per_sample])
        evidence = [
            Evidence(
                "stayed",
                stayed,
                f"of {number(len(members))} present in all {window.samples} samples "
                f"({window.seconds:.1f} s)",
            )
        ]
        if replaced is not None:
            evidence.append(
                Evidence(
                    "replaced_ratio",
                    round(replaced, 2),
                    "share of each sample's CLOSE_WAIT gone by the next",
                )
            )
        # A socket that lives longer than one interval but shorter than the window is seen
        # in two samples and replaced by the third: compare the first sample with the last
        # too, or a slow closer watched at a short interval would pass for a leak.
        gone = _gone_by_last([sample.get(pids, set()) for sample in per_sample])
        if gone is not None:
            evidence.append(
                Evidence(
                    "gone_by_last",
                    round(gone, 2),
                    "share of the first sample's CLOSE_WAIT closed by the last",
                )
            )
        churn = _churn(replaced, gone, thresholds.churn_ratio)
        if churn is not None and stayed < thresholds.close_wait_warning:
            result.append(_slow_close(finding, window, churn, stayed, evidence))
            continue
        summary = finding.summary
        oldest = max(
            (age.at_least_seconds for key in members if (age := window.ages.get(key))),
            default=None,
        )
        unchecked = tuple(item for item in finding.unchecked if not item.startswith(_TELL))
        if is_old_enough(oldest, thresholds):
            # Old enough that no slow close explains them: now it can be called a leak.
            summary = (
                f"{summary} {number(stayed)} of them stayed through the whole "
                f"{window.span_text()}, the oldest in CLOSE_WAIT at least {oldest:.0f} s: "
                "a leak, not a slow close."
            )
        else:
            # Staying through a window shorter than a slow close proves nothing yet.
            unchecked = (*unchecked, too_young_to_tell(oldest, thresholds))
        if oldest is not None:
            evidence.append(
                Evidence("oldest_at_least_s", round(oldest, 1), "in CLOSE_WAIT at least")
            )
        finding = replace(finding, unchecked=unchecked)
        earlier = (item for item in finding.evidence if item.name != "oldest_at_least_s")
        result.append(replace(finding, summary=summary, evidence=(*earlier, *evidence)))
    return result


def _slow_close(
    finding: Finding,
    window: Window,
    churn: str,
    stayed: int,
    evidence: list[Evidence],
) -> Finding:
    lower = Severity(max(Severity.INFO, finding.severity - 1))
    holder = finding.subject.describe()
    summary = (
        f"{holder} closes its CLOSE_WAIT connections, but late: {churn}, "
        f"and {number(stayed)} stayed through the "
        f"whole {window.span_text()}, so this is an application slow to call close(), not a "
        f"leak; at any moment {number(finding.count)} wait for it."
    )
    return replace(
        finding,
        code=SLOW_CLOSE,
        severity=lower,
        summary=summary,
        # Time told the slow close from a leak: that is no longer left unchecked.
        unchecked=tuple(item for item in finding.unchecked if not item.startswith(_TELL)),
        evidence=(
            Evidence("close_wait", finding.count, "in the latest sample"),
            *evidence,
            *(item for item in finding.evidence if item.name == "pids"),
        ),
        next_steps=(
            *finding.next_steps[:1],
            "Find what delays close() after the peer's FIN: a slow handler, a busy worker "
            "pool, or a connection pool that closes idle connections only on its next sweep.",
        ),
    )


_HELD_SEVERITIES = (Severity.WARNING, Severity.CRITICAL)

RULE = Rule(
    name="close_wait",
    summary="CLOSE_WAIT held by a process, never accepted, or held by an unknown owner",
    codes=(
        Code(
            NOT_CLOSED,
            "a process read its CLOSE_WAIT connections to the end and has not closed them",
            _HELD_SEVERITIES,
        ),
        Code(
            NOT_READING,
            "a process stopped reading its CLOSE_WAIT connections once the peer's FIN came",
            _HELD_SEVERITIES,
        ),
        Code(
            UNREAD_DATA,
            "a process holds CLOSE_WAIT connections with data it never read",
            _HELD_SEVERITIES,
        ),
        Code(
            HELD,
            "a process holds CLOSE_WAIT connections; the source gives no queue to say why",
            _HELD_SEVERITIES,
        ),
        Code(
            UNACCEPTED,
            "connections closed by their clients before the listener ever accepted them",
            _HELD_SEVERITIES,
        ),
        Code(
            OWNER_UNKNOWN,
            "CLOSE_WAIT piles up and the source does not say which process holds it",
            _HELD_SEVERITIES,
        ),
        Code(
            PEER_IDLE_CLOSE,
            "client connections the servers closed while idle; the pool closes them late",
            _HELD_SEVERITIES,
        ),
        Code(
            AGE_DECIDES,
            "fewer CLOSE_WAIT than warn, whose age is unknown or past a slow close: no timer "
            "ends them, so how long they stay decides between a moment and a leak",
            (Severity.INFO,),
            age_decides=True,
        ),
        Code(
            SLOW_CLOSE,
            "a process closes its CLOSE_WAIT connections, only late",
            (Severity.INFO, Severity.WARNING),
            from_series=True,
        ),
    ),
    check=check,
    check_table=check_table,
    step=over_series,
)
