"""ESTABLISHED connections that one process holds, as a client, to one server: many more than
a pool holds.

A client that reuses its connections keeps a few per destination (pools default to a few or a
few dozen). Hundreds or thousands open to one address and port mean it is not reusing them:
either that many requests are in flight at once (load: the server and the client's concurrency
are what to look at), or connections are opened and never closed (a leak: response bodies or
sessions left open, each one a descriptor and a port until something runs out). The
connections' own idle times tell the two apart -- tcp_info's time since data was last sent and
received, which a live collection has and a paste does not:

* carrying no data for ``established_idle_seconds`` (the keepalive rule's "long idle"): opened
  and left open, a leak -- WARNING;
* idle past ``stuck_seconds`` but not that long: a leak or a pool's spare connections, which
  time will tell -- WARNING, saying what settles it;
* most sent or received data (or were opened: tcp_info counts from the connect) within
  ``stuck_seconds``: in use, that many requests in flight -- INFO, load rather than a leak;
* no idle times (a paste): WARNING, saying that tcp_info would settle it.

A server's accepted connections are not counted (a listener has their local port): its many
clients are each their own peer. A paste's *count* of such a pile, without the rows, is the
reported rule's ``established-counted``, said the same way (diagnose.shared's pile wording).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import Destination, SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    PILE_IDLE_UNKNOWN,
    PILE_MEANING,
    PORTS_RAN_OUT,
    error_evidence,
    error_line,
    established_piles,
    pile_steps,
    ports_ran_out,
)
from tcphealth.diagnose.wording import number, pid_evidence, pids_key, process_subject, who
from tcphealth.model import (
    Blame,
    Endpoint,
    ErrorKind,
    Evidence,
    Finding,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import duration_text

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable

PILED = "established-piled"
_ESTABLISHED_CODE, _AF_INET, _AF_INET6 = 1, 2, 10


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    return _judged(index, thresholds, index.sockets(TcpState.ESTABLISHED))


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check` over the ESTABLISHED rows of ``table``: the client connections
    (:func:`pile_candidate`) counted per (holders, destination) with one lexsort -- a
    v4-mapped address folded to its IPv4 one, as destination() folds it -- and each pile's
    idle times read from the columns; no socket made an object (a busy host's piles hold
    tens of thousands)."""
    import numpy as np

    from tcphealth.columnar import AddressTable, distinct_rows_first

    at_least = thresholds.established_pile_warning
    columns = table.columns
    rows = np.flatnonzero(columns.state == _ESTABLISHED_CODE)
    if len(rows) < at_least:
        return []
    family, high, low = columns.family[rows], columns.dst_high[rows], columns.dst_low[rows]
    mapped = (family == _AF_INET6) & (high == 0) & ((low >> np.uint64(32)) == 0xFFFF)
    # pile_candidate: a peer that is one known host (not the unspecified address), and a
    # local port no listener here has.
    listening = np.array(sorted(p for p in index.listeners_by_port if p is not None))
    candidate = ((high != 0) | (low != 0)) & ~np.isin(columns.sport[rows], listening)
    high = np.where(mapped, (low & np.uint64(0xFFFF_FFFF)) << np.uint64(32), high)
    low = np.where(mapped, np.uint64(0), low)
    family = np.where(mapped, np.uint8(_AF_INET), family)
    rows, family, high, low = rows[candidate], family[candidate], high[candidate], low[candidate]
    port = columns.dport[rows]
    holder = table.holders[rows]
    values, counts, first = distinct_rows_first([holder, family, high, low, port])
    # Each (holders as given, destination) once, then by the holders' normal form, in the
    # order a pass over the rows meets them.
    addresses = AddressTable()
    met: dict[tuple[tuple[int, ...], Destination], tuple[int, int, list[int]]] = {}
    for at, (number_at, kind, top, bottom, remote_port) in enumerate(zip(*values, strict=True)):
        remote = Endpoint(addresses.get(kind, top, bottom), remote_port)
        key = (pids_key(table.groups[number_at]), remote)
        earliest, count, combos = met.get(key, (first[at], 0, []))
        met[key] = (min(earliest, first[at]), count + counts[at], [*combos, at])
    findings: list[Finding] = []
    sent, received = columns.last_data_sent_ms, columns.last_data_recv_ms
    for (pids, toward), (_, count, combos) in sorted(met.items(), key=lambda item: item[1][0]):
        if count < at_least:
            continue
        wanted = np.zeros(len(rows), dtype=np.bool_)
        for at in combos:
            wanted |= (
                (holder == values[0][at])
                & (family == values[1][at])
                & (high == values[2][at])
                & (low == values[3][at])
                & (port == values[4][at])
            )
        members = rows[wanted]
        known = members[columns.has_info[members]]
        idle = (np.minimum(sent[known], received[known]) / 1000).tolist()
        findings.append(_finding(index, thresholds, pids, toward, len(members), idle))
    return findings


def _judged(
    index: SnapshotIndex, thresholds: Thresholds, sockets: Iterable[Socket]
) -> list[Finding]:
    piles = established_piles(index, sockets, thresholds.established_pile_warning)
    return [
        _finding(
            index,
            thresholds,
            pids,
            toward,
            len(members),
            [idle for sock in members if (idle := _data_idle_seconds(sock)) is not None],
        )
        for (pids, toward), members in piles.items()
    ]


def _data_idle_seconds(sock: Socket) -> float | None:
    """How long the connection has carried no data either way (tcp_info); ACKs alone, such
    as keepalive's, do not count. None where the source lacks it."""
    info = sock.tcp_info
    if info is None or info.last_data_sent_ms is None or info.last_data_recv_ms is None:
        return None
    return min(info.last_data_sent_ms, info.last_data_recv_ms) / 1000


def _finding(
    index: SnapshotIndex,
    thresholds: Thresholds,
    pids: tuple[int, ...],
    toward: Destination,
    count: int,
    known: list[float],
) -> Finding:
    """The finding of a pile of ``count`` connections, ``known`` the idle times of those
    whose tcp_info gives them (:func:`_data_idle_seconds`)."""
    left_after = float(thresholds.established_idle_seconds)
    enough = thresholds.established_pile_warning
    severity = Severity.WARNING
    unchecked: list[str] = []
    evidence: list[Evidence] = [
        Evidence("sockets", count, f"ESTABLISHED to {toward}, from client ports"),
    ]
    if len(known) < count:
        reading = "Whether they are idle or busy the source does not say."
        unchecked.append(PILE_IDLE_UNKNOWN)
    else:
        # Quiet: past what a passing moment explains (never longer than "left open" itself).
        quiet_after = min(thresholds.stuck_seconds, left_after)
        left = sum(1 for value in known if value >= left_after)
        quiet = sum(1 for value in known if value >= quiet_after)
        longest = max(known)
        evidence.extend(
            (
                Evidence(
                    "idle_at_least",
                    left,
                    f"carried no data for {duration_text(left_after)} or more "
                    "(established_idle_seconds)",
                ),
                Evidence(
                    "busy",
                    count - quiet,
                    f"sent, received or opened within the last {quiet_after:g} s (stuck_seconds)",
                ),
                Evidence("longest_idle_s", round(longest, 1), "tcp_info's lastsnd/lastrcv"),
            )
        )
        if left >= enough:
            reading = (
                f"{number(left)} of them have carried no data for {duration_text(left_after)} "
                "or more: opened and left open -- a leak, or a pool far larger than its use."
            )
        elif quiet >= enough:
            reading = (
                f"{number(quiet)} of them have carried no data for {quiet_after:g} s "
                f"or more (the longest for {duration_text(longest)}), not yet the "
                f"{duration_text(left_after)} that calls a connection left open."
            )
            unchecked.append(
                "whether they are left open (a leak) or a pool's spare connections: none has "
                f"been idle for {duration_text(left_after)} yet; the same look later settles it"
            )
        else:
            severity = Severity.INFO
            reading = (
                f"{number(count - quiet)} of them sent or received data, or were "
                f"opened, within the last {quiet_after:g} s: active now, not left idle -- that "
                "many requests in flight at once is load rather than a leak, and the server's "
                "capacity and the client's concurrency are what to look at."
            )
            unchecked.append(
                "whether they carry requests or were only just opened: tcp_info's idle times "
                f"count from the connect; a leak's connections stay idle, which a look after "
                f"{duration_text(left_after)} tells"
            )
    harm = ""
    if severity is not Severity.INFO:
        severity, ran_out = ports_ran_out(index, severity)
        if ran_out is not None:
            evidence.append(ran_out)
            harm = PORTS_RAN_OUT
        descriptors = error_line(index, ErrorKind.DESCRIPTORS)
        if descriptors is not None:
            severity = Severity.CRITICAL
            evidence.append(
                error_evidence(
                    descriptors,
                    "a process ran out of file descriptors (EMFILE): each of these "
                    "connections holds one",
                )
            )
            harm += "; the paste's own error line says a process ran out of file descriptors"
    if pids:
        holder = who(index, pids)
        subject = process_subject(index, pids, address=toward)
    else:
        holder = "A process the source does not name"
        subject = Subject(kind=SubjectKind.PEER, endpoint=str(toward), address=toward)
        unchecked.append(
            "which process holds them, and whether it is one: the source names no holder; "
            "ss -tnp as root shows them"
        )
    return Finding(
        code=PILED,
        severity=severity,
        state=TcpState.ESTABLISHED,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=count,
        summary=(
            f"{holder} holds {number(count)} ESTABLISHED connections open to {toward}: "
            f"{PILE_MEANING}{harm}. {reading}"
        ),
        evidence=(*evidence, *pid_evidence(pids)),
        next_steps=pile_steps(str(toward)),
        unchecked=tuple(unchecked),
    )


RULE = Rule(
    name="piled",
    summary="ESTABLISHED piled by one client toward one server: not reused, or leaked",
    codes=(
        Code(
            PILED,
            "one process holds many ESTABLISHED connections to one server: not reused (busy: "
            "load; idle: a leak)",
            (Severity.INFO, Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
    check_table=check_table,
)
