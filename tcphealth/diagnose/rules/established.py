"""ESTABLISHED connections whose queues show a side that stopped moving.

* Data sent, unacknowledged, retransmitted again and again: the peer or the path is gone
  (the kernel gives up after tcp_retries2, at least ~924 s by default).
* A large receive queue: the local application is not reading what arrived.
* A zero-window probe timer: the peer advertised a closed window -- it is not reading.

Where tcp_info says where a sender's time went (kernel 4.10+: busy, rwnd-limited and
sndbuf-limited time), the zero-window finding gives the share of the sending time the peer's
window held the connections back, against the share their own send buffer did: the first
confirms the peer, the second would point at this host's SO_SNDBUF or tcp_wmem.

The last two claim that a reader *stopped*, which is a claim about time: one look at a busy
reader that is only behind shows the same queue. They say "stopped" only once the condition has
lasted (diagnose.lasting): by tcp_info's time since data last arrived, or by a series that saw
it in every sample of a long enough stretch; before that they say what the sample shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import Destination, SnapshotIndex, destination, plain_address
from tcphealth.diagnose.lasting import cannot_tell_yet, has_lasted, held_across, oldest
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.shared import local_peers, retransmits_of
from tcphealth.diagnose.wording import (
    attribution_gaps,
    level,
    number,
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
    host_or_default,
    retransmission_budget,
    stalled_seconds_left,
)

PEER_UNREACHABLE = "established-peer-unreachable"
PEER_NOT_READING = "established-peer-not-reading"
NOT_READING = "established-not-reading"

# Kernel codes: TCP_ESTABLISHED; inet_diag's zero-window probe timer.
_ESTABLISHED_CODE, _ZERO_WINDOW_TIMER = 1, 4

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


@dataclass
class _Group:
    sockets: int = 0
    queued_bytes: int = 0
    max_retransmits: int = 0
    destinations: Counter[Destination] = field(default_factory=Counter)
    pids: Counter[tuple[int, ...]] = field(default_factory=Counter)
    # Seconds until the kernel ends each stalled connection (states.stalled_seconds_left), for
    # those whose source gives the timer, the retransmissions and tcp_info's rto.
    ends_in: list[float] = field(default_factory=list)
    members: list[Socket] = field(default_factory=list)
    # tcp_info's sending time (us), summed over the sockets whose source gives all three.
    timed: int = 0
    busy_us: int = 0
    rwnd_limited_us: int = 0
    sndbuf_limited_us: int = 0

    def add(self, sock: Socket, queued: int | None, retransmits: int | None = None) -> None:
        self.members.append(sock)
        self.sockets += 1
        self.queued_bytes += queued or 0
        self.max_retransmits = max(self.max_retransmits, retransmits or 0)
        self.destinations[destination(sock.remote)] += 1
        self.pids[pids_key(sock.pids)] += 1
        info = sock.tcp_info
        if (
            info is not None
            and info.busy_time_us is not None
            and info.rwnd_limited_us is not None
            and info.sndbuf_limited_us is not None
        ):
            self.timed += 1
            self.busy_us += info.busy_time_us
            self.rwnd_limited_us += info.rwnd_limited_us
            self.sndbuf_limited_us += info.sndbuf_limited_us

    def limited_evidence(self) -> tuple[Evidence, ...]:
        """What held the senders back, as shares of their sending time; nothing where tcp_info
        does not say or they never sent."""
        if not self.timed or self.busy_us <= 0:
            return ()
        of = f"of {_ms(self.busy_us)} spent sending, over {number(self.timed)} connections"
        return (
            Evidence(
                "rwnd_limited",
                f"{100 * self.rwnd_limited_us / self.busy_us:.1f}%",
                f"{_ms(self.rwnd_limited_us)} held back by the peer's window, {of}",
            ),
            Evidence(
                "sndbuf_limited",
                f"{100 * self.sndbuf_limited_us / self.busy_us:.1f}%",
                f"{_ms(self.sndbuf_limited_us)} held back by this host's send buffer, {of}",
            ),
        )


def _ms(microseconds: int) -> str:
    return f"{number(round(microseconds / 1000))} ms"


def _seconds_left(sock: Socket, retries2: int) -> float | None:
    """When the kernel gives up on a stalled socket, if the source says enough to tell."""
    info = sock.tcp_info
    retransmits = retransmits_of(sock)
    if (
        info is None
        or info.rto_us is None
        or retransmits is None
        or sock.timer is not TimerKind.RETRANSMIT
        or sock.timer_seconds is None
    ):
        return None
    return stalled_seconds_left(retries2, retransmits, info.rto_us / 1e6, sock.timer_seconds)


def _is_stalled(sock: Socket, thresholds: Thresholds) -> bool:
    retransmits = retransmits_of(sock)
    if retransmits is None or retransmits < thresholds.established_min_retransmits:
        return False
    # Retransmissions with nothing queued would be a loss probe on an idle socket.
    return sock.send_queue is None or sock.send_queue > 0


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    return _judged(index, thresholds, index.sockets(TcpState.ESTABLISHED))


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check` over the ESTABLISHED rows of ``table`` that may be stalled, probed for
    a zero window or not read (a superset picked from the columns), made objects in their
    order: every other row adds nothing to any finding."""
    import numpy as np

    columns = table.columns
    retransmits = np.maximum(columns.retrans, columns.retransmits)  # either may be the one
    maybe = (
        ((retransmits >= thresholds.established_min_retransmits) & (columns.wqueue > 0))
        | (columns.timer == _ZERO_WINDOW_TIMER)
        | (columns.rqueue >= thresholds.established_recv_queue_bytes)
    )
    rows = np.flatnonzero(maybe & (columns.state == _ESTABLISHED_CODE))
    return _judged(index, thresholds, table.sockets(rows))


def _judged(
    index: SnapshotIndex, thresholds: Thresholds, sockets: Iterable[Socket]
) -> list[Finding]:
    stalled: dict[IPAddress, _Group] = {}
    not_reading: dict[tuple[int, ...], _Group] = {}
    peer_not_reading: dict[IPAddress, _Group] = {}
    retries2, _ = host_or_default(index.snapshot.sysctls, "tcp_retries2")
    zero_window = TimerKind.ZERO_WINDOW_PROBE
    for sock in sockets:
        # The peer's address is worked out only for the few sockets that need it.
        if _is_stalled(sock, thresholds):
            group = stalled.setdefault(plain_address(sock.remote.address), _Group())
            group.add(sock, sock.send_queue, retransmits_of(sock))
            left = _seconds_left(sock, retries2)
            if left is not None:
                group.ends_in.append(left)
        elif sock.timer is zero_window:
            peer = plain_address(sock.remote.address)
            peer_not_reading.setdefault(peer, _Group()).add(sock, sock.send_queue)
        queued = sock.recv_queue
        if queued is not None and queued >= thresholds.established_recv_queue_bytes:
            not_reading.setdefault(pids_key(sock.pids), _Group()).add(sock, queued)

    findings: list[Finding] = []
    for peer, group in stalled.items():
        finding = _stalled_finding(index, peer, group, thresholds)
        if finding is not None:
            findings.append(finding)
    for peer, group in peer_not_reading.items():
        finding = _peer_not_reading_finding(index, peer, group, thresholds)
        if finding is not None:
            findings.append(finding)
    for pids, group in not_reading.items():
        finding = _not_reading_finding(index, pids, group, thresholds)
        if finding is not None:
            findings.append(finding)
    return findings


def _local_senders(index: SnapshotIndex, group: _Group) -> tuple[Evidence, ...]:
    """The local processes sending what this one does not read, when the other end is here."""
    senders = local_peers(index, group.members, TcpState.ESTABLISHED)
    if not senders:
        return ()
    return (Evidence("local_peer", who(index, senders), "holds the other ends, sending to it"),)


def _clients_text(index: SnapshotIndex, group: _Group) -> str:
    holders = [pids for pids, _ in group.pids.most_common() if pids]
    if len(holders) == 1:
        return f" of {who(index, holders[0])}"
    if holders:
        return f" of {len(holders)} processes"
    return ""


def _stalled_finding(
    index: SnapshotIndex, peer: IPAddress, group: _Group, thresholds: Thresholds
) -> Finding | None:
    severity = level(group.sockets, thresholds.established_warning, thresholds.established_critical)
    if severity is None:
        return None
    retries2, assumed = host_or_default(index.snapshot.sysctls, "tcp_retries2")
    give_up = duration_text(retransmission_budget(retries2, 0.2))
    ends = _predicted_end(group, give_up)
    end_evidence: tuple[Evidence, ...] = ()
    if group.ends_in:
        end_evidence = (
            Evidence(
                "ends_in_s",
                round(min(group.ends_in), 1),
                "the soonest the kernel ends one with ETIMEDOUT, unless an ACK arrives",
            ),
            Evidence("last_ends_in_s", round(max(group.ends_in), 1), "the latest of them"),
        )
    return Finding(
        code=PEER_UNREACHABLE,
        severity=severity,
        state=TcpState.ESTABLISHED,
        blame=Blame.NETWORK,
        subject=Subject(kind=SubjectKind.PEER, endpoint=str(peer), address=Endpoint(peer, None)),
        count=group.sockets,
        summary=(
            f"{number(group.sockets)} connections{_clients_text(index, group)} to {peer} have "
            f"{number(group.queued_bytes)} bytes unacknowledged, retransmitted up to "
            f"{group.max_retransmits} times: the peer or the path to it is gone; {ends}"
        ),
        evidence=(
            Evidence("stalled", group.sockets, "retransmit timer running, no ACK"),
            Evidence("send_queue_bytes", group.queued_bytes, "sent and not acknowledged"),
            Evidence("max_retransmits", group.max_retransmits, "consecutive timeouts"),
            Evidence(
                "tcp_retries2",
                retries2,
                f"gives up after at least {give_up}" + (" (default assumed)" if assumed else ""),
            ),
            *end_evidence,
            *top_destinations(group.destinations),
        ),
        next_steps=(
            f"ss -tnpo state established dst {peer}   # timer:(on,...) and Send-Q",
            f"mtr -T -c 10 -r {peer}",
            "nstat -az TcpExtTCPTimeouts TcpRetransSegs TcpExtTCPAbortOnTimeout",
        ),
    )


def _predicted_end(group: _Group, give_up: str) -> str:
    """The connections' end as one clause: from the timers where the source gives them,
    else the bound every stalled connection shares."""
    if not group.ends_in:
        return f"the kernel drops them after at least {give_up} from the first unanswered send."
    soonest, latest = min(group.ends_in), max(group.ends_in)
    if latest - soonest < 1 or len(group.ends_in) == 1:
        when = f"in about {duration_text(latest)}"
    else:
        when = f"in {duration_text(soonest)} to {duration_text(latest)}"
    unknown = group.sockets - len(group.ends_in)
    also = f" ({number(unknown)} without a timer to tell)" if unknown else ""
    return f"the kernel ends them {when}{also} unless an ACK arrives (ETIMEDOUT)."


def _peer_not_reading_finding(
    index: SnapshotIndex, peer: IPAddress, group: _Group, thresholds: Thresholds
) -> Finding | None:
    severity = level(group.sockets, thresholds.established_warning, thresholds.established_critical)
    if severity is None:
        return None
    senders = tuple(sorted({pid for pids in group.pids for pid in pids}))
    # Both ends on this host: the reader is a local process (with its own finding when its
    # receive queue is large); name it, and look at it here rather than "on the peer".
    readers = local_peers(index, group.members, TcpState.ESTABLISHED)
    # One look cannot tell how long the window has been closed: "stopped" waits for a series.
    if readers:
        reader = who(index, readers)
        cause = f"{reader}, on this host, has not read what it was sent"
        look = (
            f"ss -tnpo state established | grep -F 'pid={readers[0]},'   # Recv-Q of {reader}, "
            "the local reader"
        )
        local: tuple[Evidence, ...] = (
            Evidence("local_peer", reader, "holds the other ends, not reading them"),
        )
    else:
        cause = f"the application at {peer} has not read what it was sent"
        look = f"On {peer}: ss -tnp   # a large Recv-Q there names the application not reading"
        local = ()
    return Finding(
        code=PEER_NOT_READING,
        severity=severity,
        state=TcpState.ESTABLISHED,
        blame=Blame.REMOTE_PEER,
        subject=Subject(
            kind=SubjectKind.PEER,
            pid=senders[0] if len(senders) == 1 else None,
            process=index.process_name(senders[0]) if len(senders) == 1 else None,
            endpoint=str(peer),
            address=Endpoint(peer, None),
            pids=(*senders, *(pid for pid in readers if pid not in senders)),
        ),
        count=group.sockets,
        summary=(
            f"{number(group.sockets)} connections{_clients_text(index, group)} to {peer} are "
            f"probing a zero window with {number(group.queued_bytes)} bytes waiting to be "
            f"sent: {cause}. No timer ends them while it answers the window probes: they last "
            "until one side closes or the window opens."
        ),
        evidence=(
            Evidence("zero_window", group.sockets, "zero-window probe timer running"),
            Evidence("send_queue_bytes", group.queued_bytes, "waiting for the peer's window"),
            *group.limited_evidence(),
            *top_destinations(group.destinations),
            *local,
        ),
        next_steps=(
            f"ss -tnpo state established dst {peer}   # timer:(persist,...) and Send-Q",
            look,
        ),
        unchecked=(cannot_tell_yet(_WINDOW_STAYS, _CLOSED, None, thresholds),),
    )


def _not_reading_finding(
    index: SnapshotIndex, pids: tuple[int, ...], group: _Group, thresholds: Thresholds
) -> Finding | None:
    severity = level(group.sockets, thresholds.established_warning, thresholds.established_critical)
    if severity is None:
        return None
    holder = who(index, pids)
    # tcp_info's time since data last arrived, with data still unread: the reader has not
    # caught up for at least that long.
    untouched = oldest(_idle_seconds(sock) for sock in group.members)
    unread = (
        f"{number(group.queued_bytes)} bytes have arrived and wait unread (at least "
        f"{number(thresholds.established_recv_queue_bytes)} each)"
    )
    if has_lasted(untouched, thresholds) and untouched is not None:
        summary = (
            f"{holder} has stopped reading {number(group.sockets)} connections: {unread}, "
            f"nothing new has arrived for at least {untouched:.0f} s; "
            f"{share_text(group.destinations, group.sockets, 'from')}."
        )
        young: tuple[str, ...] = ()
    else:
        summary = (
            f"{holder} has not read what arrived on {number(group.sockets)} connections: "
            f"{unread}; {share_text(group.destinations, group.sockets, 'from')}."
        )
        young = (cannot_tell_yet(_STOPPED, _UNREAD, untouched, thresholds),)
    idle_evidence: tuple[Evidence, ...] = (
        ()
        if untouched is None
        else (
            Evidence(
                "unread_at_least_s",
                round(untouched, 1),
                "nothing has arrived for this long, and it is still unread (tcp_info)",
            ),
        )
    )
    return Finding(
        code=NOT_READING,
        severity=severity,
        state=TcpState.ESTABLISHED,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids),
        count=group.sockets,
        summary=summary,
        evidence=(
            Evidence("recv_queue_bytes", group.queued_bytes, "received, not read"),
            Evidence("sockets", group.sockets, None),
            *idle_evidence,
            *top_destinations(group.destinations),
            *pid_evidence(pids),
            *_local_senders(index, group),
        ),
        next_steps=(
            f"ss -tnpo state established | grep -F 'pid={pids[0]},'"
            if pids
            else "ss -tnpo state established   # as root, to see the owners",
            f"grep State /proc/{pids[0]}/status   # T = stopped"
            if pids
            else "Find the process from the local port.",
            "A thread dump shows where the reader is blocked.",
        ),
        unchecked=(
            *(
                ()
                if pids
                else (
                    attribution_gaps(index, TcpState.ESTABLISHED)
                    or ("which process holds them: the source does not say",)
                )
            ),
            *young,
        ),
    )


# The starts of the unchecked items a young finding leaves, so that a series can drop them.
_STOPPED = "whether it stopped reading or is only behind"
_UNREAD = "the oldest unread data"
_WINDOW_STAYS = "whether the receiver stopped reading or is only behind"
_CLOSED = "the closed window"


def _idle_seconds(sock: Socket) -> float | None:
    info = sock.tcp_info
    if info is None or info.last_data_recv_ms is None:
        return None
    return info.last_data_recv_ms / 1000


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """A reader that stopped, told over a series: the same connections kept their unread
    data (or their closed window) in every sample of a stretch at least
    ``stuck_seconds`` long, or tcp_info's floor says as much. Then the finding says the
    reader stopped; before, it keeps saying it cannot tell yet, with the time seen so far."""
    established = [s for s in window.latest.sockets if s.state is TcpState.ESTABLISHED]
    result: list[Finding] = []
    for finding in findings:
        if finding.code == NOT_READING:
            members = [
                sock
                for sock in established
                if _unread(sock, thresholds) and pids_key(sock.pids) == finding.subject.pids
            ]
            spans = held_across(window, members, lambda sock: _unread(sock, thresholds), "unread")
            floor = oldest(_idle_seconds(sock) for sock in members)
            lasted = oldest((*spans.values(), floor))
            result.append(_told_over_time(finding, lasted, thresholds, _STOPPED, _UNREAD, "unread"))
        elif finding.code == PEER_NOT_READING:
            peer = finding.subject.address.address if finding.subject.address else None
            members = [
                sock
                for sock in established
                if _zero_window(sock, thresholds) and plain_address(sock.remote.address) == peer
            ]
            spans = held_across(
                window, members, lambda sock: _zero_window(sock, thresholds), "zero-window"
            )
            result.append(
                _told_over_time(
                    finding, oldest(spans.values()), thresholds, _WINDOW_STAYS, _CLOSED, "closed"
                )
            )
        else:
            result.append(finding)
    return result


def _unread(sock: Socket, thresholds: Thresholds) -> bool:
    queued = sock.recv_queue
    return queued is not None and queued >= thresholds.established_recv_queue_bytes


def _zero_window(sock: Socket, thresholds: Thresholds) -> bool:
    return sock.timer is TimerKind.ZERO_WINDOW_PROBE and not _is_stalled(sock, thresholds)


def _told_over_time(
    finding: Finding,
    lasted: float | None,
    thresholds: Thresholds,
    question: str,
    what: str,
    word: str,
) -> Finding:
    unchecked = tuple(item for item in finding.unchecked if not item.startswith(question))
    summary = finding.summary
    if has_lasted(lasted, thresholds) and lasted is not None:
        if "has stopped reading" not in summary:
            summary = (
                f"{summary} The same connections stayed {word} for at least {lasted:.0f} s: "
                "the reader has stopped reading them."
            )
    else:
        unchecked = (*unchecked, cannot_tell_yet(question, what, lasted, thresholds))
    evidence = tuple(item for item in finding.evidence if item.name != "lasted_at_least_s")
    if lasted is not None:
        evidence = (
            *evidence,
            Evidence("lasted_at_least_s", round(lasted, 1), f"seen {word} at least this long"),
        )
    return replace(finding, summary=summary, unchecked=unchecked, evidence=evidence)


RULE = Rule(
    name="established",
    summary="stalled sends, unread receive queues, zero windows",
    codes=(
        Code(
            PEER_UNREACHABLE,
            "data sent to one peer goes unacknowledged and is resent: the peer or path is gone",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            PEER_NOT_READING,
            "one peer advertises a zero window: it does not read what this host sends",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            NOT_READING,
            "a process leaves data unread in its receive queues",
            (Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
    check_table=check_table,
    step=over_series,
)
