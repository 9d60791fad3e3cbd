"""Closes that do not finish: FIN_WAIT1, CLOSING and LAST_ACK retransmitting their FIN, and
FIN_WAIT2 waiting for a peer that never closes.

* FIN_WAIT1 / CLOSING / LAST_ACK stay when our FIN is not acknowledged: the peer or the path to
  it is gone. Orphans (closed by the application) are retried tcp_orphan_retries times; above
  tcp_max_orphans the kernel resets them.
* FIN_WAIT2 held by a process (it half-closed with shutdown() and kept the descriptor) has no
  timer: tcp_fin_timeout applies only to orphans. Whether its peer never closes is a claim
  about time, made only once the wait has lasted (diagnose.lasting); one look at a young one
  says the peer has not closed yet. Orphaned FIN_WAIT2 goes away after tcp_fin_timeout and is
  normal unless there are very many.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import (
    Destination,
    SnapshotIndex,
    TableRows,
    destination,
    owned_by_fd,
)
from tcphealth.diagnose.lasting import (
    age_evidence,
    cannot_tell_yet,
    has_lasted,
    oldest,
    split_by_age,
)
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.shared import (
    Elsewhere,
    TablePeers,
    counted_beyond_listing,
    destinations_of_table,
    elision_among,
    ends_by_group,
    group_numbers,
    held_groups_of_table,
    listing_elsewhere,
    local_peers,
    local_ports_of_table,
    peers_text,
    platform_steps,
    reach_elsewhere,
    retransmits_of,
)
from tcphealth.diagnose.timeline import connection_key, kernel_age_floor
from tcphealth.diagnose.wording import (
    attribution_gaps,
    level,
    number,
    percent,
    pid_evidence,
    pids_key,
    process_subject,
    share_text,
    top_destinations,
    who,
)
from tcphealth.model import (
    Blame,
    Endpoint,
    Evidence,
    Finding,
    IPAddress,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
    TimerKind,
)
from tcphealth.states import (
    duration_text,
    effective_orphan_retries,
    host_or_default,
    retransmission_budget,
)

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    import numpy as np
    import numpy.typing as npt

    from tcphealth.columnar import SocketTable

# The kernel's TCP_FIN_WAIT2 and TCP_CLOSE_WAIT, and its code of the TIME_WAIT timer.
_FIN_WAIT2_CODE, _CLOSE_WAIT_CODE, _TIME_WAIT_TIMER = 5, 8, 3

FIN_WAIT1_UNACKED = "fin-wait1-fin-unacknowledged"
CLOSING_UNACKED = "closing-fin-unacknowledged"
LAST_ACK_UNACKED = "last-ack-fin-unacknowledged"
FIN_WAIT2_HELD = "fin-wait2-held"
FIN_WAIT2_ORPHANS = "fin-wait2-orphans"
# Held FIN_WAIT2 below fin_wait2_held_warning whose wait is of unknown length or has lasted:
# no timer ends it, so whether the peers close late or never is told by how long it stays.
FIN_WAIT2_AGE_DECIDES = "fin-wait2-age-decides"

# The states whose FIN goes unacknowledged, each with its code.
_FIN_CODES = {
    TcpState.FIN_WAIT1: FIN_WAIT1_UNACKED,
    TcpState.CLOSING: CLOSING_UNACKED,
    TcpState.LAST_ACK: LAST_ACK_UNACKED,
}
_SS_STATE = {
    TcpState.FIN_WAIT1: "fin-wait-1",
    TcpState.CLOSING: "closing",
    TcpState.LAST_ACK: "last-ack",
    TcpState.FIN_WAIT2: "fin-wait-2",
}
# Above this share of tcp_max_orphans the kernel is about to reset orphans outright.
_ORPHAN_PRESSURE = 0.8


def _orphan_evidence(index: SnapshotIndex) -> tuple[list[Evidence], bool]:
    """tcp_orphan_retries, tcp_max_orphans and the sockstat orphan count; True when orphans
    are close to the limit."""
    sysctls = index.snapshot.sysctls
    evidence: list[Evidence] = []
    if sysctls.tcp_orphan_retries is not None:
        retries = effective_orphan_retries(sysctls.tcp_orphan_retries)
        evidence.append(
            Evidence(
                "tcp_orphan_retries",
                sysctls.tcp_orphan_retries,
                f"an orphan's FIN is given up after at least "
                f"{duration_text(retransmission_budget(retries, 0.2))}",
            )
        )
    orphans = index.snapshot.counters.get("sockstat.TCP.orphan")
    if orphans is not None:
        evidence.append(Evidence("orphans", orphans, "sockets no process holds any more"))
    pressure = False
    if sysctls.tcp_max_orphans is not None:
        detail = "beyond it the kernel resets orphans"
        if orphans is not None and sysctls.tcp_max_orphans > 0:
            ratio = orphans / sysctls.tcp_max_orphans
            pressure = ratio >= _ORPHAN_PRESSURE
            detail = f"{percent(ratio)} used, and {detail}"
        evidence.append(Evidence("tcp_max_orphans", sysctls.tcp_max_orphans, detail))
    return evidence, pressure


def _fin_findings(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    orphan_evidence, orphan_pressure = _orphan_evidence(index)
    for state, code in _FIN_CODES.items():
        stuck: list[Socket] = []
        peers: Counter[IPAddress] = Counter()
        destinations: Counter[Destination] = Counter()
        orphaned = 0
        for sock in index.sockets(state):
            retransmits = retransmits_of(sock)
            if retransmits is None or retransmits < thresholds.closing_min_retransmits:
                continue
            stuck.append(sock)
            dest = destination(sock.remote)
            destinations[dest] += 1
            peers[dest.address] += 1
            if sock.inode == 0:
                orphaned += 1
        severity = level(len(stuck), thresholds.closing_warning, thresholds.closing_critical)
        if severity is None:
            continue
        if orphan_pressure:
            severity = Severity.CRITICAL
        count = len(stuck)
        single_peer = next(iter(peers)) if len(peers) == 1 else None
        subject = (
            Subject(
                kind=SubjectKind.PEER,
                endpoint=str(single_peer),
                address=Endpoint(single_peer, None),
            )
            if single_peer is not None
            else Subject(kind=SubjectKind.HOST)
        )
        evidence = [
            Evidence(state.value.lower(), count, "FIN retransmitted, not acknowledged"),
            Evidence("orphaned", orphaned, "already closed by the application (inode 0)"),
            Evidence("peers", len(peers), "distinct remote addresses"),
            *top_destinations(destinations),
            *orphan_evidence,
        ]
        timeouts = index.snapshot.counters.get("TcpExt.TCPAbortOnTimeout")
        if timeouts is not None:
            evidence.append(Evidence("TCPAbortOnTimeout", timeouts, "gave up after retries"))
        pressure_text = (
            "; orphans are near tcp_max_orphans, so the kernel will start resetting them"
            if orphan_pressure
            else ""
        )
        findings.append(
            Finding(
                code=code,
                severity=severity,
                state=state,
                blame=Blame.NETWORK,
                subject=subject,
                count=count,
                summary=(
                    f"{number(count)} connections sit in {state.value} with their FIN sent "
                    f"{thresholds.closing_min_retransmits} or more times and never "
                    "acknowledged: the peer or the path to it is gone; "
                    f"{peers_text(index, (s.local.port for s in stuck), destinations, count)}"
                    f"{pressure_text}."
                ),
                evidence=tuple(evidence),
                next_steps=platform_steps(
                    index.snapshot.host.platform,
                    (
                        f"ss -tno state {_SS_STATE[state]}   # retransmit timers and peers",
                        _path_probe(destinations),
                        "nstat -az TcpExtTCPAbortOnTimeout   # connections the kernel gave up on",
                        "cat /proc/net/sockstat   # orphans",
                    ),
                    elsewhere=_fin_elsewhere(state, destinations),
                ),
            )
        )
    return findings


_READ_TIMEOUT = (
    "Give the local application a read timeout after shutdown(), so it closes when the peer "
    "never answers."
)


def _peer_elsewhere(index: SnapshotIndex, peers: tuple[int, ...], peer_step: str) -> Elsewhere:
    """Where the peer that never closes is a local process: its CLOSE_WAIT, listed the
    platform's way; else the step about the peer host, which may run anything."""
    if not peers:
        return Elsewhere((peer_step,), (peer_step,))
    listed = listing_elsewhere(
        TcpState.CLOSE_WAIT,
        pid=peers[0],
        why=f"{who(index, peers)}, the local peer that has not closed",
    )
    return Elsewhere(listed.bsd[:1], listed.windows[:1])


def _fin_elsewhere(state: TcpState, destinations: Counter[Destination]) -> Elsewhere:
    """Their peers, the way to the most frequent one, and the retransmissions given up on,
    on macOS/BSD and on Windows."""
    top, _ = min(destinations.items(), key=lambda i: (-i[1], str((i[0].address, i[0].port))))
    given_up = Elsewhere(
        ("netstat -s -p tcp | grep -i rexmit   # connections dropped after retransmitting",),
        ("netstat -s -p tcp   # Segments Retransmitted: still rising?",),
    )
    return (
        listing_elsewhere(state, why="their peers")
        .plus(reach_elsewhere(str(top.address), top.port))
        .plus(given_up)
    )


def _path_probe(destinations: Counter[Destination]) -> str:
    """An mtr command toward the most frequent peer (ties broken by address text)."""
    # Ties go by the text of the (address, port) pair, as they always have.
    top, _ = min(destinations.items(), key=lambda i: (-i[1], str((i[0].address, i[0].port))))
    address, port = top.address, top.port
    port_option = f" -P {port}" if port is not None else ""
    return f"mtr -T{port_option} -c 10 -r {address}   # where do packets to the top peer stop?"


def _is_orphaned_fin_wait2(sock: Socket) -> bool:
    # The TIME_WAIT timer on a FIN_WAIT2 socket is the orphan's tcp_fin_timeout (KERNEL.md).
    return sock.inode == 0 or sock.timer is TimerKind.TIME_WAIT


def _is_held_fin_wait2(sock: Socket) -> bool:
    return owned_by_fd(sock) or (sock.inode is not None and sock.inode != 0)


def _held_fin_wait2_groups(sockets: Iterable[Socket]) -> dict[tuple[int, ...], list[Socket]]:
    """Held FIN_WAIT2 among ``sockets``, by the normal form of their pids."""
    held_as_given: dict[tuple[int, ...], list[Socket]] = {}  # by the source's own pid tuple
    for sock in sockets:
        if not _is_orphaned_fin_wait2(sock) and _is_held_fin_wait2(sock):
            held_as_given.setdefault(sock.pids, []).append(sock)
    held: dict[tuple[int, ...], list[Socket]] = {}
    for pids, group in held_as_given.items():
        held.setdefault(pids_key(pids), []).extend(group)
    return held


# The start of the unchecked item of a held FIN_WAIT2 too young to say its peers never close.
_PEERS_CLOSE = "whether these peers ever close their side"
_WAIT = "the oldest wait in FIN_WAIT2"


def _relayed_close_waits(
    index: SnapshotIndex, pids: tuple[int, ...], fin_wait2: Sequence[Socket]
) -> int:
    """CLOSE_WAIT that the holder of ``fin_wait2`` also keeps, other than the far ends of
    those connections (a process talking to itself over loopback)."""
    if not pids:
        return 0
    # Looked up by pid in the index, not found by a pass over every CLOSE_WAIT per holder.
    held = index.held_by(TcpState.CLOSE_WAIT)
    holders = set(pids)
    kept: Iterable[Socket]
    if len(holders) == 1:
        kept = held.get(pids[0], ())
    else:  # a socket several of them share is under each: count it once
        kept = {id(sock): sock for pid in holders for sock in held.get(pid, ())}.values()
    if not kept:
        return 0  # it keeps no CLOSE_WAIT: no need to list the far ends of its FIN_WAIT2
    far_ends = {(sock.remote, sock.local) for sock in fin_wait2}
    return sum(1 for sock in kept if (sock.local, sock.remote) not in far_ends)


def _close_wait_unshown(index: SnapshotIndex, pids: tuple[int, ...]) -> str | None:
    """Where the paste's listing kept one state other than CLOSE_WAIT (``grep FIN_WAIT2``):
    the unchecked item saying that whether the holder also keeps CLOSE_WAIT -- a relay -- was
    not shown. None where the listing shows every state."""
    kept = index.snapshot.listed_state
    if kept is None or kept is TcpState.CLOSE_WAIT:
        return None
    look = "ss -tnp state close-wait" + (f" | grep -F 'pid={pids[0]},'" if pids else "")
    return (
        "whether it also keeps connections in CLOSE_WAIT (a relay that half-closes and closes "
        f"neither side, to be fixed here): the paste's listing kept {kept.value} rows only "
        f"({look} tells)"
    )


def _story_evidence(relayed: int, unshown: bool = False) -> tuple[Evidence, ...]:
    """Why the blame falls where it does, said in the evidence."""
    if unshown and not relayed:
        return (
            Evidence(
                "close_wait_same_holder",
                None,
                "not shown: the listing kept one other state only, so a relay is not ruled out",
            ),
        )
    if relayed:
        return (
            Evidence(
                "close_wait_same_holder",
                relayed,
                "it also leaves connections in CLOSE_WAIT: a relay that half-closes and never "
                "closes, so the fix is in this process",
            ),
        )
    return (
        Evidence(
            "close_wait_same_holder",
            0,
            "none listed: it closed its side on its own, and the wait is on the peers' FIN",
        ),
    )


@dataclass
class _HeldWait:
    """The held FIN_WAIT2 of one holder, as its finding reads them. Its local peers and the
    CLOSE_WAIT it relays are worked out when asked (a holder below the warning count whose
    sockets all had traffic lately needs neither)."""

    sockets: Sequence[Socket]
    destinations: Counter[Destination]
    local_ports: Iterable[int | None]
    waited: float | None  # tcp_info's floor of the longest wait (kernel_age_floor)
    peers: Callable[[], tuple[int, ...]]
    relayed: Callable[[], int]

    @classmethod
    def of(cls, index: SnapshotIndex, pids: tuple[int, ...], sockets: list[Socket]) -> _HeldWait:
        return cls(
            sockets=sockets,
            destinations=Counter(destination(s.remote) for s in sockets),
            local_ports=[s.local.port for s in sockets],
            waited=oldest(map(kernel_age_floor, sockets)),
            peers=functools.partial(local_peers, index, sockets, TcpState.CLOSE_WAIT),
            relayed=functools.partial(_relayed_close_waits, index, pids, sockets),
        )


def _fin_wait2_findings(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    orphaned = 0
    orphan_peers: Counter[Destination] = Counter()
    for sock in index.sockets(TcpState.FIN_WAIT2):
        if _is_orphaned_fin_wait2(sock):
            orphaned += 1
            orphan_peers[destination(sock.remote)] += 1
    held = [
        (pids, _HeldWait.of(index, pids, sockets))
        for pids, sockets in _held_fin_wait2_groups(index.sockets(TcpState.FIN_WAIT2)).items()
    ]
    return _fin_wait2_judged(index, thresholds, held, orphaned, orphan_peers)


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check`, the FIN_WAIT2 rows of ``table`` counted over its columns: each
    holder's grouped with one lexsort, their local peers and the CLOSE_WAIT the holder relays
    found by one join with the CLOSE_WAIT rows; objects only for a holder below the warning
    count (whose finding rests on each socket's age). The index must have been built from
    ``table`` with FIN_WAIT2 lazy, else the objects are read as by :func:`check`."""
    import numpy as np

    if not index.reads_table(table, TcpState.FIN_WAIT2):
        return check(index, thresholds)
    columns = table.columns
    rows = np.flatnonzero(columns.state == _FIN_WAIT2_CODE)
    # _is_orphaned_fin_wait2; every other FIN_WAIT2 has an inode, so it is held.
    orphaned = (columns.inode[rows] == 0) | (columns.timer[rows] == _TIME_WAIT_TIMER)
    held_rows = rows[~orphaned]
    groups = held_groups_of_table(table, held_rows)
    group_of = group_numbers(table, groups)
    joined = TablePeers(index, table, held_rows, _CLOSE_WAIT_CODE)
    peers = joined.by_group(group_of, len(groups))
    # The CLOSE_WAIT a holder keeps (index.held_by: those with pids), and the far ends of each
    # group's FIN_WAIT2 among them (not relayed: the other end of its own connection): the
    # rows and the join the peers were found by.
    close_wait = joined.others
    close_wait_holders = table.holders[close_wait]
    group, far_end = ends_by_group(group_of, *joined.ends)
    by_group = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[by_group], np.arange(len(groups) + 1))
    held: list[tuple[tuple[int, ...], _HeldWait]] = []
    for at, ((pids, members), local) in enumerate(zip(groups, peers, strict=True)):
        with_info = members[columns.has_info[members]]
        held.append(
            (
                pids,
                _HeldWait(
                    sockets=TableRows(index, members),
                    destinations=destinations_of_table(columns, members),
                    local_ports=local_ports_of_table(columns, members),
                    waited=(
                        int(columns.last_ack_recv_ms[with_info].max()) / 1000
                        if len(with_info)
                        else None
                    ),
                    peers=functools.partial(_given, local),
                    relayed=functools.partial(
                        _relayed_of_table,
                        table,
                        pids,
                        close_wait,
                        close_wait_holders,
                        far_end[by_group[bounds[at] : bounds[at + 1]]],
                    ),
                ),
            )
        )
    return _fin_findings(index, thresholds) + _fin_wait2_judged(
        index,
        thresholds,
        held,
        int(np.count_nonzero(orphaned)),
        destinations_of_table(columns, rows[orphaned]),
    )


def _relayed_of_table(
    table: SocketTable,
    pids: tuple[int, ...],
    close_wait: npt.NDArray[np.intp],
    close_wait_holders: npt.NDArray[np.uint32],
    far_ends: npt.NDArray[np.intp],
) -> int:
    """:func:`_relayed_close_waits` over the table: of the CLOSE_WAIT rows (``close_wait``,
    held by ``close_wait_holders``), those a pid of ``pids`` holds, but the far ends of its
    own FIN_WAIT2 (``far_ends``)."""
    import numpy as np

    if not pids:
        return 0
    wanted = set(pids)
    numbers = [at for at, group in enumerate(table.groups) if wanted.intersection(group)]
    kept = close_wait[np.isin(close_wait_holders, numbers)]
    far = np.zeros(len(table), dtype=np.bool_)
    far[far_ends] = True
    return int(np.count_nonzero(~far[kept]))


def _given(pids: tuple[int, ...]) -> tuple[int, ...]:
    return pids


def _fin_wait2_judged(
    index: SnapshotIndex,
    thresholds: Thresholds,
    held: list[tuple[tuple[int, ...], _HeldWait]],
    orphaned: int,
    orphan_peers: Counter[Destination],
) -> list[Finding]:
    """The FIN_WAIT2 findings: each holder's held ones (``held``, in order), the orphans."""
    findings: list[Finding] = []
    sysctls = index.snapshot.sysctls
    fin_timeout = sysctls.tcp_fin_timeout
    timeout, timeout_assumed = host_or_default(sysctls, "tcp_fin_timeout")
    timeout_text = (
        f"tcp_fin_timeout (default {timeout} s assumed)"
        if timeout_assumed
        else f"tcp_fin_timeout ({timeout} s)"
    )
    for pids, group in held:
        sockets = group.sockets
        severity = level(
            len(sockets), thresholds.fin_wait2_held_warning, thresholds.fin_wait2_held_critical
        )
        if severity is None and counted_beyond_listing(
            index, TcpState.FIN_WAIT2, pids, thresholds.fin_wait2_held_warning
        ):
            continue  # the paste's own count of this holder's pile is judged instead
        # Rows left out of a pasted listing right beside these: the ones shown are a sample,
        # their count a floor, and the reporter cut them for being many.
        elided = elision_among(index, TcpState.FIN_WAIT2, pids)
        if severity is None and elided is not None:
            severity = Severity.WARNING
        if severity is None:
            few = _age_decides(index, pids, sockets, thresholds, group)
            if few is not None:
                findings.append(few)
            continue
        destinations = group.destinations
        holder = who(index, pids)
        count = len(sockets)
        # Both ends on this host: the peer that never closes is a local process, with its
        # own CLOSE_WAIT finding; name it instead of sending the reader to "the peer host".
        peers = group.peers()
        peer_evidence: tuple[Evidence, ...] = ()
        if peers:
            local_peer = who(index, peers)
            peer_text = (
                f" The other end is on this host: {local_peer} holds it in CLOSE_WAIT and "
                "has not closed it (its own CLOSE_WAIT finding)."
            )
            peer_step = (
                f"ss -tnpo state close-wait | grep -F 'pid={peers[0]},'   # {local_peer}, "
                "the local peer that has not closed"
            )
            peer_evidence = (
                Evidence("local_peer", local_peer, "holds the other end, in CLOSE_WAIT"),
            )
        else:
            peer_text = ""
            peer_step = (
                "On the peer host: ss -tnp state close-wait   # the application that never closes"
            )
        relayed = group.relayed()
        subject = process_subject(index, pids)
        extra = tuple(pid for pid in peers if pid not in subject.pids)
        # tcp_info's time since the peer's last ACK: the wait has lasted at least that long.
        waited = group.waited
        if has_lasted(waited, thresholds):
            wait_text = (
                "waits for peers that never close theirs; because it keeps the descriptors, "
                "tcp_fin_timeout (for orphans only) does not apply and they wait forever"
            )
            young: tuple[str, ...] = ()
        else:
            # One look at a young wait: the peers have not closed yet, which a slow peer
            # also explains.
            wait_text = (
                "its peers have not closed theirs yet; while it keeps the descriptors no timer "
                "ends these (tcp_fin_timeout is for orphans only)"
            )
            young = (cannot_tell_yet(_PEERS_CLOSE, _WAIT, waited, thresholds),)
        waited_evidence: tuple[Evidence, ...] = (
            ()
            if waited is None
            else (
                Evidence(
                    "oldest_at_least_s",
                    round(waited, 1),
                    "in FIN_WAIT2 at least this long (tcp_info: time since the peer's last ACK)",
                ),
            )
        )
        # One story, decided by what the input shows (reported.py tells it the same way): a
        # holder that also keeps CLOSE_WAIT passed one peer's close on as a half-close and
        # closed neither side -- its own doing; otherwise the wait is on peers not closing.
        # A peer that is a process on this host (holding the far end in CLOSE_WAIT) is a
        # local application too: the fix is here, not on another host.
        blame = Blame.LOCAL_APPLICATION if relayed or peers else Blame.REMOTE_PEER
        unshown = _close_wait_unshown(index, pids)
        story = _story_evidence(relayed, unshown is not None)
        count_text = f"at least {number(count)}" if elided is not None else number(count)
        elided_text = (
            f" The paste leaves more of these rows out ({elided.mark!r}), so this is a floor."
            if elided is not None
            else ""
        )
        relay_text = (
            f" It also holds {number(relayed)} connections in CLOSE_WAIT: it passes a peer's "
            "close on as a half-close and closes neither side, so it must close both."
            if relayed
            else ""
        )
        findings.append(
            Finding(
                code=FIN_WAIT2_HELD,
                severity=severity,
                state=TcpState.FIN_WAIT2,
                blame=blame,
                subject=replace(subject, pids=(*subject.pids, *extra)),
                count=count,
                summary=(
                    f"{holder} holds {count_text} connections in FIN_WAIT2: it shut down its "
                    f"sending side and {wait_text}; "
                    f"{peers_text(index, group.local_ports, destinations, count)}."
                    f"{peer_text}{relay_text}{elided_text}"
                ),
                evidence=(
                    Evidence("fin_wait2_held", count, "half-closed, descriptor still open"),
                    *story,
                    *(
                        ()
                        if elided is None
                        else (
                            Evidence(
                                "elided",
                                elided.mark,
                                "the paste's mark for rows left out beside these: the count "
                                "shown is a floor",
                            ),
                        )
                    ),
                    Evidence(
                        "tcp_fin_timeout",
                        fin_timeout,
                        "applies only to orphans, not to these",
                    ),
                    *waited_evidence,
                    *top_destinations(destinations),
                    *pid_evidence(pids),
                    *peer_evidence,
                ),
                next_steps=platform_steps(
                    index.snapshot.host.platform,
                    (
                        f"ss -tnpo state fin-wait-2 | grep -F 'pid={pids[0]},'"
                        if pids
                        else "ss -tnpo state fin-wait-2",
                        peer_step,
                        _READ_TIMEOUT,
                    ),
                    elsewhere=listing_elsewhere(TcpState.FIN_WAIT2, pid=pids[0] if pids else None)
                    .plus(_peer_elsewhere(index, peers, peer_step))
                    .then(_READ_TIMEOUT),
                ),
                unchecked=(
                    *(() if pids else attribution_gaps(index, TcpState.FIN_WAIT2)),
                    *(() if unshown is None else (unshown,)),
                    *young,
                    *(
                        ()
                        if elided is None
                        else (
                            "how many there are: the paste shows some and leaves the rest out "
                            "(ss -tnpo state fin-wait-2 | wc -l counts them)",
                        )
                    ),
                ),
            )
        )
    if orphaned >= thresholds.fin_wait2_orphan_warning:
        findings.append(
            Finding(
                code=FIN_WAIT2_ORPHANS,
                severity=Severity.WARNING,
                state=TcpState.FIN_WAIT2,
                blame=Blame.REMOTE_PEER,
                subject=Subject(kind=SubjectKind.HOST),
                count=orphaned,
                summary=(
                    f"{number(orphaned)} closed connections wait in FIN_WAIT2 for peers to "
                    f"close their side; each goes after {timeout_text}, but this many means "
                    f"peers routinely fail to close -- {share_text(orphan_peers, orphaned)}."
                ),
                evidence=(
                    Evidence("fin_wait2_orphaned", orphaned, "no process holds them"),
                    Evidence("tcp_fin_timeout", fin_timeout, "how long each may wait"),
                    *top_destinations(orphan_peers),
                ),
                next_steps=platform_steps(
                    index.snapshot.host.platform,
                    (
                        "ss -tno state fin-wait-2   # which peers do not close",
                        "cat /proc/net/sockstat   # tw counts these too",
                    ),
                    elsewhere=listing_elsewhere(TcpState.FIN_WAIT2, why="which peers do not close"),
                ),
                unchecked=()
                if fin_timeout is not None
                else ("tcp_fin_timeout: not in the snapshot",),
            )
        )
    return findings


def _age_decides(
    index: SnapshotIndex,
    pids: tuple[int, ...],
    sockets: Sequence[Socket],
    thresholds: Thresholds,
    group: _HeldWait,
) -> Finding | None:
    """Held FIN_WAIT2 below fin_wait2_held_warning: none when every one had traffic within
    stuck_seconds (a peer about to close); else INFO, saying that the wait's length decides."""
    limit = thresholds.stuck_seconds
    split = split_by_age(
        sockets, limit, index.observed_seconds if index.series_ages is not None else None
    )
    if not split.undecided:
        return None
    count = split.undecided
    holder = who(index, pids)
    destinations = group.destinations
    peers = group.peers()
    relayed = group.relayed()
    unshown = _close_wait_unshown(index, pids)
    # The same story as fin-wait2-held: a relay, or a peer on this host, is a local fix.
    blame = Blame.LOCAL_APPLICATION if relayed or peers else Blame.REMOTE_PEER
    waits = "it waits" if count == 1 else "they wait"
    if split.lasting:
        oldest_text = f"{split.oldest:.0f} s" if split.oldest is not None else f"{limit:g} s"
        age_text = (
            f"{'one has' if split.lasting == 1 else f'{number(split.lasting)} have'} waited at "
            f"least {oldest_text}, past the {limit:g} s a slow peer explains: the peers are not "
            "closing"
            + (
                f" (how long the other {number(split.unknown)} have waited is not known)"
                if split.unknown
                else ""
            )
            + "."
        )
    else:
        age_text = (
            f"the input does not say how long {waits}, and that decides: a peer about to "
            "close, or one that never will."
        )
    local_text = (
        f" The other end is on this host: {who(index, peers)} holds it in CLOSE_WAIT."
        if peers
        else ""
    )
    summary = (
        f"{holder} holds {number(count)} "
        f"{'connection' if count == 1 else 'connections'} in FIN_WAIT2: it shut down its "
        f"sending side and keeps the {'descriptor' if count == 1 else 'descriptors'}, and "
        f"the {'peer has' if count == 1 else 'peers have'} not closed yet; "
        f"{peers_text(index, group.local_ports, destinations, count)}. That is below the "
        f"{number(thresholds.fin_wait2_held_warning)} that warn, but while the process keeps "
        f"them no timer ends {'it' if count == 1 else 'them'} (tcp_fin_timeout is for "
        f"orphans only); {age_text}{local_text}"
    )
    evidence: list[Evidence] = [
        Evidence("fin_wait2_held", count, "half-closed, descriptor still open"),
        Evidence("fin_wait2_held_warning", thresholds.fin_wait2_held_warning, "warns from this"),
        *_story_evidence(relayed, unshown is not None),
    ]
    young = f"traffic within {limit:g} s (tcp_info): not counted, the peer may close soon"
    evidence.extend(age_evidence(split, "FIN_WAIT2", limit, young=young))
    evidence.extend(top_destinations(destinations))
    evidence.extend(pid_evidence(pids))
    look = "ss -tnpo state fin-wait-2" + (f" | grep -F 'pid={pids[0]},'" if pids else "")
    unchecked: list[str] = [] if unshown is None else [unshown]
    if split.unknown:
        unchecked.append(
            f"{_PEERS_CLOSE}: how long they have waited in FIN_WAIT2 is not known, and a "
            f"second look after {limit:g} s settles it (the next steps): the same connections "
            "still there are peers that do not close"
        )
    subject = process_subject(index, pids)
    extra = tuple(pid for pid in peers if pid not in subject.pids)
    return Finding(
        code=FIN_WAIT2_AGE_DECIDES,
        severity=Severity.INFO,
        state=TcpState.FIN_WAIT2,
        blame=blame,
        subject=replace(subject, pids=(*subject.pids, *extra)),
        count=count,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"{look}   # again after {limit:g} s: the same ones still there are not closed",
                f"tcphealth check --samples 4 --interval {max(1, round(limit / 3)):g}"
                "   # follows them and says which stay",
            ),
            elsewhere=listing_elsewhere(
                TcpState.FIN_WAIT2,
                pid=pids[0] if pids else None,
                why=f"again after {limit:g} s: the same ones still there are not closed",
            ),
        ),
        unchecked=tuple(unchecked),
    )


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    return _fin_findings(index, thresholds) + _fin_wait2_findings(index, thresholds)


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """Held FIN_WAIT2 over a series: the wait is the longest of the samples' own age (seen in
    FIN_WAIT2 in every sample since) and the kernel's floor; once it is past a passing moment
    the finding says the peers do not close, and stops leaving that unchecked."""
    held = _held_fin_wait2_groups(
        sock for sock in window.latest.sockets if sock.state is TcpState.FIN_WAIT2
    )
    result: list[Finding] = []
    for finding in findings:
        if finding.code != FIN_WAIT2_HELD:
            result.append(finding)
            continue
        pids = finding.subject.pids
        # The subject lists the holder's pids first, then those of a local peer; a holder the
        # source does not name has no pids, and its group is the one without.
        members = next(
            (group for key, group in held.items() if pids[: len(key)] == key and (key or not pids)),
            [],
        )
        waited = oldest(
            age.at_least_seconds
            for sock in members
            if (age := window.ages.get(connection_key(sock))) is not None
        )
        unchecked = tuple(item for item in finding.unchecked if not item.startswith(_PEERS_CLOSE))
        summary = finding.summary
        if has_lasted(waited, thresholds) and waited is not None:
            summary = (
                f"{summary} The oldest has waited in FIN_WAIT2 at least {waited:.0f} s: "
                "these peers do not close, and nothing here ends the wait."
            )
        else:
            unchecked = (*unchecked, cannot_tell_yet(_PEERS_CLOSE, _WAIT, waited, thresholds))
        evidence = tuple(item for item in finding.evidence if item.name != "oldest_at_least_s")
        if waited is not None:
            evidence = (
                *evidence,
                Evidence("oldest_at_least_s", round(waited, 1), "in FIN_WAIT2 at least"),
            )
        result.append(replace(finding, summary=summary, unchecked=unchecked, evidence=evidence))
    return result


_LEVELS = (Severity.WARNING, Severity.CRITICAL)

RULE = Rule(
    name="closing",
    summary="FIN_WAIT1 / CLOSING / LAST_ACK not acknowledged; FIN_WAIT2 that never ends",
    codes=(
        Code(
            FIN_WAIT1_UNACKED,
            "closed connections resend their FIN in FIN_WAIT1 and the peer never acknowledges it",
            _LEVELS,
        ),
        Code(
            CLOSING_UNACKED,
            "connections closed by both sides at once wait in CLOSING for an ACK that never comes",
            _LEVELS,
        ),
        Code(
            LAST_ACK_UNACKED,
            "connections closed after their peer wait in LAST_ACK for its final ACK, in vain",
            _LEVELS,
        ),
        Code(
            FIN_WAIT2_HELD,
            "a process shut down its sending side and keeps the sockets, which no timer ends: "
            "its peers have not closed theirs yet (said to be never only once the wait outlasts "
            "stuck_seconds), or it relays a half-close and closes neither side",
            _LEVELS,
        ),
        Code(
            FIN_WAIT2_AGE_DECIDES,
            "fewer held FIN_WAIT2 than warn, whose wait is unknown or has lasted: no timer ends "
            "them, so how long they stay decides between a slow peer and one that never closes",
            (Severity.INFO,),
            age_decides=True,
        ),
        Code(
            FIN_WAIT2_ORPHANS,
            "many closed connections wait in FIN_WAIT2 for peers that do not close their side",
            (Severity.WARNING,),
        ),
    ),
    check=check,
    check_table=check_table,
    step=over_series,
)
