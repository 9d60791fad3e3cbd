"""ESTABLISHED connections that nothing moves, and whether any timer will ever end them.

An ESTABLISHED connection with nothing to send has no timer of the kernel's own: if the peer
vanished (a host powered off, a NAT that forgot the flow) it stays for ever, holding a
descriptor, a port and the application's resources, unless the application set SO_KEEPALIVE.
With keepalive, after ``tcp_keepalive_time`` idle the kernel probes the peer
``tcp_keepalive_probes`` times, ``tcp_keepalive_intvl`` apart, and ends the connection
(ETIMEDOUT) when none is answered. (Data left unacknowledged is the established rule's, with
tcp_retries2; a zero window, too.)

* Keepalive probes outstanding: the peer stopped answering; the connection ends at a time this
  rule works out from the timer and the settings (states.keepalive_seconds_left).
* Idle for long with no keepalive timer: no timer will end it. Worth knowing, not an alarm.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import Destination, SnapshotIndex, destination, plain_address
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.wording import (
    number,
    pids_key,
    process_subject,
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
from tcphealth.states import duration_text, host_or_default, keepalive_seconds_left

KEEPALIVE_UNANSWERED = "established-keepalive-unanswered"
IDLE_NO_KEEPALIVE = "established-idle-no-keepalive"
# Kernel codes: TCP_ESTABLISHED; inet_diag's timer numbers (none, keepalive).
_ESTABLISHED_CODE, _NO_TIMER, _KEEPALIVE_TIMER = 1, 0, 2

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


@dataclass
class _Group:
    sockets: int = 0
    ends_in: list[float] = field(default_factory=list)
    idle_ms: list[int] = field(default_factory=list)
    destinations: Counter[Destination] = field(default_factory=Counter)
    pids: Counter[tuple[int, ...]] = field(default_factory=Counter)

    def add(self, sock: Socket) -> None:
        self.sockets += 1
        self.destinations[destination(sock.remote)] += 1
        self.pids[pids_key(sock.pids)] += 1


def _idle_ms(sock: Socket) -> int | None:
    """How long nothing has been sent or received (tcp_info); None where the source lacks it."""
    info = sock.tcp_info
    if info is None:
        return None
    sent, received, acked = info.last_data_sent_ms, info.last_data_recv_ms, info.last_ack_recv_ms
    if sent is None or received is None or acked is None:
        return None
    return min(sent, received, acked)


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    sysctls = index.snapshot.sysctls
    probes, probes_assumed = host_or_default(sysctls, "tcp_keepalive_probes")
    interval, interval_assumed = host_or_default(sysctls, "tcp_keepalive_intvl")
    unanswered: dict[IPAddress, _Group] = {}
    idle: dict[tuple[int, ...], _Group] = {}
    idle_limit_ms = thresholds.established_idle_seconds * 1000
    keepalive, no_timer = TimerKind.KEEPALIVE, TimerKind.NONE
    for sock in index.sockets(TcpState.ESTABLISHED):
        timer = sock.timer
        if timer is not keepalive and timer is not no_timer:
            continue
        if timer is keepalive and sock.probes:
            group = unanswered.setdefault(plain_address(sock.remote.address), _Group())
            group.add(sock)
            if sock.timer_seconds is not None:
                group.ends_in.append(
                    keepalive_seconds_left(sock.timer_seconds, sock.probes, probes, interval)
                )
        elif timer is no_timer and not sock.send_queue and not sock.recv_queue:
            # _idle_ms(sock), written out: this runs for most ESTABLISHED sockets.
            info = sock.tcp_info
            if info is None:
                continue
            sent, received = info.last_data_sent_ms, info.last_data_recv_ms
            acked = info.last_ack_recv_ms
            if sent is None or received is None or acked is None:
                continue
            idle_ms = min(sent, received, acked)
            if idle_ms >= idle_limit_ms:
                group = idle.setdefault(pids_key(sock.pids), _Group())
                group.add(sock)
                group.idle_ms.append(idle_ms)
    return _judged(index, unanswered, idle, probes, interval, probes_assumed, interval_assumed)


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check`, counting the quiet ESTABLISHED connections -- most of a host's -- over
    ``table`` (every socket of the index's snapshot, as columns); the few with keepalive
    probes outstanding are made objects. The same findings in the same order
    (tests/test_lean_rules.py)."""
    import numpy as np

    from tcphealth.columnar import AddressTable, distinct_rows_first

    sysctls = index.snapshot.sysctls
    probes, probes_assumed = host_or_default(sysctls, "tcp_keepalive_probes")
    interval, interval_assumed = host_or_default(sysctls, "tcp_keepalive_intvl")
    columns = table.columns
    established = columns.state == _ESTABLISHED_CODE
    timer = columns.timer
    # A socket's probes: tcp_info's where it came, else the retrans byte under this timer.
    probing = np.where(columns.has_info, columns.probes, columns.retrans)
    unanswered: dict[IPAddress, _Group] = {}
    outstanding = np.flatnonzero(established & (timer == _KEEPALIVE_TIMER) & (probing != 0))
    for sock in table.sockets(outstanding):
        group = unanswered.setdefault(plain_address(sock.remote.address), _Group())
        group.add(sock)
        if sock.timer_seconds is not None and sock.probes:
            group.ends_in.append(
                keepalive_seconds_left(sock.timer_seconds, sock.probes, probes, interval)
            )
    idle_ms = np.minimum(
        np.minimum(columns.last_data_sent_ms, columns.last_data_recv_ms), columns.last_ack_recv_ms
    )
    quiet = (
        established
        & (timer == _NO_TIMER)
        & (columns.wqueue == 0)
        & (columns.rqueue == 0)
        & columns.has_info
        & (idle_ms >= thresholds.established_idle_seconds * 1000)
    )
    rows = np.flatnonzero(quiet)
    # Each holder set a group, in the order the object loop meets them; its destinations
    # likewise, folded as destination() folds them.
    holders = table.holders[rows]
    longest = np.zeros(len(table.groups), dtype=np.uint32)
    np.maximum.at(longest, holders, idle_ms[rows])
    idle: dict[tuple[int, ...], _Group] = {}
    (holder_values,), counts, first = distinct_rows_first([holders])
    for at in sorted(range(len(counts)), key=first.__getitem__):
        pids = pids_key(table.groups[holder_values[at]])
        group = idle.setdefault(pids, _Group())
        group.sockets += counts[at]
        group.pids[pids] += counts[at]
        group.idle_ms.append(int(longest[holder_values[at]]))
    addresses = AddressTable()
    values, counts, first = distinct_rows_first(
        [
            holders,
            columns.family[rows],
            columns.dst_high[rows],
            columns.dst_low[rows],
            columns.dport[rows],
        ]
    )
    for at in sorted(range(len(counts)), key=first.__getitem__):
        holder, family, high, low, port = (value[at] for value in values)
        remote = Endpoint(addresses.get(family, high, low), port)
        idle[pids_key(table.groups[holder])].destinations[destination(remote)] += counts[at]
    return _judged(index, unanswered, idle, probes, interval, probes_assumed, interval_assumed)


def _judged(
    index: SnapshotIndex,
    unanswered: dict[IPAddress, _Group],
    idle: dict[tuple[int, ...], _Group],
    probes: int,
    interval: int,
    probes_assumed: bool,
    interval_assumed: bool,
) -> list[Finding]:
    assumed = [
        name
        for name, was in (
            ("tcp_keepalive_probes", probes_assumed),
            ("tcp_keepalive_intvl", interval_assumed),
        )
        if was
    ]
    findings = [
        _unanswered(index, peer, group, probes, interval, assumed)
        for peer, group in unanswered.items()
    ]
    findings.extend(_idle(index, pids, group) for pids, group in idle.items())
    return findings


def _holders_text(index: SnapshotIndex, group: _Group) -> str:
    holders = [pids for pids, _ in group.pids.most_common() if pids]
    if len(holders) == 1:
        return f" of {who(index, holders[0])}"
    if holders:
        return f" of {len(holders)} processes"
    return ""


def _unanswered(
    index: SnapshotIndex,
    peer: IPAddress,
    group: _Group,
    probes: int,
    interval: int,
    assumed: list[str],
) -> Finding:
    if group.ends_in:
        soonest, latest = min(group.ends_in), max(group.ends_in)
        when = (
            f"in about {duration_text(latest)}"
            if latest - soonest < 1
            else f"in {duration_text(soonest)} to {duration_text(latest)}"
        )
        end = f"keepalive ends them {when} unless the peer answers (ETIMEDOUT)"
    else:
        end = f"keepalive ends them after {probes} unanswered probes {interval} s apart"
    evidence = [
        Evidence("keepalive_unanswered", group.sockets, "keepalive probes sent, none answered"),
        Evidence("tcp_keepalive_probes", probes, "unanswered probes before the end"),
        Evidence("tcp_keepalive_intvl", interval, "seconds between probes"),
    ]
    if group.ends_in:
        evidence.append(
            Evidence("ends_in_s", round(min(group.ends_in), 1), "the soonest of them ends")
        )
    evidence.extend(top_destinations(group.destinations))
    return Finding(
        code=KEEPALIVE_UNANSWERED,
        severity=Severity.WARNING,
        state=TcpState.ESTABLISHED,
        blame=Blame.NETWORK,
        subject=Subject(kind=SubjectKind.PEER, endpoint=str(peer), address=Endpoint(peer, None)),
        count=group.sockets,
        summary=(
            f"{number(group.sockets)} idle connections{_holders_text(index, group)} to {peer} "
            f"get no answer to their keepalive probes: the peer or the path to it is gone; "
            f"{end}."
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tnpo state established dst {peer}   # timer:(keepalive,...) and its probes",
            f"ping -c 3 {peer}",
        ),
        unchecked=(
            *(f"{name}: not in the snapshot, so the Linux default was assumed" for name in assumed),
            "per-socket TCP_KEEPIDLE/KEEPINTVL/KEEPCNT: a socket that sets its own is not seen",
        ),
    )


def _idle(index: SnapshotIndex, pids: tuple[int, ...], group: _Group) -> Finding:
    longest = max(group.idle_ms) / 1000
    holder = who(index, pids) if pids else "Some process"
    return Finding(
        code=IDLE_NO_KEEPALIVE,
        severity=Severity.INFO,
        state=TcpState.ESTABLISHED,
        blame=Blame.NONE,
        subject=process_subject(index, pids),
        count=group.sockets,
        summary=(
            f"{holder} holds {number(group.sockets)} ESTABLISHED connections idle for up to "
            f"{duration_text(longest)} without keepalive: if a peer has gone away, no timer "
            "will end them, only the application closing them."
        ),
        evidence=(
            Evidence("idle_no_keepalive", group.sockets, "nothing sent or received, no timer"),
            Evidence("longest_idle_s", round(longest), "since anything was sent or received"),
            *top_destinations(group.destinations),
        ),
        next_steps=(
            "ss -tnpo state established   # no timer:(keepalive,...) on them",
            "Set SO_KEEPALIVE (with TCP_KEEPIDLE) or an idle timeout in the application or its "
            "connection pool.",
        ),
    )


RULE = Rule(
    name="keepalive",
    summary="idle ESTABLISHED connections: unanswered keepalives, or none to end them",
    codes=(
        Code(
            KEEPALIVE_UNANSWERED,
            "idle connections to one peer get no answer to keepalive probes: they end soon",
            (Severity.WARNING,),
        ),
        Code(
            IDLE_NO_KEEPALIVE,
            "long-idle connections without keepalive: no timer would end them if a peer left",
            (Severity.INFO,),
        ),
    ),
    check=check,
    check_table=check_table,
)
