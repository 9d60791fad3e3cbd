"""Segments the kernel threw away on arrival, after TCP had them: per socket from skmem (the
netlink source asks for INET_DIAG_SKMEMINFO; ``ss -m`` shows the same count as ``d``), and host
wide from TcpExt TCPRcvQDrop (no room in a receive queue) and TCPBacklogDrop (the backlog of a
socket an application held locked was full).

The two do not count the same thing: data that arrives beyond a closed window is dropped and
counted on the socket, not in either counter, so a receiver with a tiny SO_RCVBUF shows drops
on its socket while the counters stay 0. Each is shown for what it is.

A single look can only say "since the socket opened" or "since boot"; a series says whether it
is happening (the drops of a connection seen in the first sample and the last, the counters'
rise).

A LISTEN socket's count is not about data: on a listener the kernel counts the handshakes it
dropped there (tcp_listendrop, when the accept queue was full), so listeners are left to the
accept-queue rule, which shows that count as its own evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.timeline import connection_key
from tcphealth.diagnose.wording import (
    number,
    pid_evidence,
    pids_key,
    plural,
    process_subject,
    who,
)
from tcphealth.model import (
    Blame,
    Evidence,
    Finding,
    Severity,
    Snapshot,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)

RECEIVE_DROPS = "receive-drops"
RECEIVE_DROPS_RISING = "receive-drops-rising"
_LISTEN_CODE = 10  # the kernel's TCP_LISTEN

_COUNTERS: tuple[tuple[str, str], ...] = (
    ("TcpExt.TCPRcvQDrop", "no room in a socket's receive queue"),
    ("TcpExt.TCPBacklogDrop", "a locked socket's backlog was full"),
)

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


@dataclass
class _Holder:
    sockets: int = 0
    drops: int = 0
    recv_queue: int = 0
    worst: tuple[int, str] = (0, "")  # the most drops on one socket, and which

    def add(self, drops: int, recv_queue: int | None, name: str) -> None:
        self.sockets += 1
        self.drops += drops
        self.recv_queue += recv_queue or 0
        if drops > self.worst[0]:
            self.worst = (drops, name)


@dataclass
class _Seen:
    holders: dict[tuple[int, ...], _Holder] = field(default_factory=dict)
    known: int = 0  # sockets whose source gives their drops


def _data_drops(sock: Socket) -> int | None:
    """The socket's drop count when it counts arriving data; None when the source does not
    give it, or for a listener (its count is of dropped handshakes: the module's docstring)."""
    return None if sock.state is TcpState.LISTEN else sock.drops


def _socket_drops(sockets: Iterable[Socket]) -> _Seen:
    seen = _Seen()
    listen = TcpState.LISTEN
    for sock in sockets:
        drops = sock.drops  # _data_drops(sock), written out: this runs for every socket
        if drops is None or sock.state is listen:
            continue
        seen.known += 1
        if drops > 0:
            holder = seen.holders.setdefault(pids_key(sock.pids), _Holder())
            holder.add(drops, sock.recv_queue, f"{sock.local} <- {sock.remote}")
    return seen


def _since_boot(snapshot: Snapshot) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(name.split(".")[-1], snapshot.counters[name], f"since boot: {meaning}")
        for name, meaning in _COUNTERS
        if name in snapshot.counters
    )


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    return _judged(index, _socket_drops(index.snapshot.sockets))


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check`, with the sockets that dropped anything picked out of ``table`` (every
    socket of the snapshot, as columns) and made objects: the others add nothing."""
    import numpy as np

    columns = table.columns
    dropped = np.flatnonzero((columns.drops > 0) & (columns.state != _LISTEN_CODE))
    return _judged(index, _socket_drops(table.sockets(dropped)))


def _judged(index: SnapshotIndex, seen: _Seen) -> list[Finding]:
    snapshot = index.snapshot
    findings = [
        _socket_finding(index, pids, holder, _since_boot(snapshot))
        for pids, holder in seen.holders.items()
    ]
    if not findings:
        counted = sum(snapshot.counters.get(name, 0) for name, _ in _COUNTERS)
        if counted > 0:
            findings.append(_host_finding(snapshot, counted))
    return findings


def _socket_finding(
    index: SnapshotIndex, pids: tuple[int, ...], holder: _Holder, counters: tuple[Evidence, ...]
) -> Finding:
    holder_text = who(index, pids)
    return Finding(
        code=RECEIVE_DROPS,
        severity=Severity.INFO,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids),
        count=holder.sockets,
        summary=(
            f"The kernel dropped {plural(holder.drops, 'arriving segment')} on "
            f"{plural(holder.sockets, 'connection')} of {holder_text} since they opened: "
            "their receive buffer was full, or data came beyond the window they advertised. "
            "The peers resend it, late."
        ),
        evidence=(
            Evidence("drops", holder.drops, "skmem d, summed over the connections"),
            Evidence(
                "most_drops", holder.worst[0], f"on {holder.worst[1]}" if holder.worst[1] else None
            ),
            Evidence("recv_queue_bytes", holder.recv_queue, "waiting to be read now"),
            *counters,
            *pid_evidence(pids),
        ),
        next_steps=(
            "ss -tmn   # skmem:(r<queued>,rb<buffer>,...,d<drops>) per socket",
            "nstat -az TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop TcpExtTCPZeroWindowDrop",
            "A receive buffer (rb) far under tcp_rmem's maximum was set small with SO_RCVBUF, "
            "and a queue (r) near rb means the application reads too slowly.",
        ),
        unchecked=("whether they are still dropping: one look shows the count since they opened",),
    )


def _host_finding(snapshot: Snapshot, counted: int) -> Finding:
    return Finding(
        code=RECEIVE_DROPS,
        severity=Severity.INFO,
        state=None,
        blame=Blame.NONE,
        subject=Subject(kind=SubjectKind.HOST),
        count=0,  # segments, not sockets: the evidence gives them
        summary=(
            f"Since boot the kernel dropped {plural(counted, 'arriving segment')} because a "
            "socket's receive queue or backlog had no room; none of the sockets now shows "
            "drops of its own, or the source does not say."
        ),
        evidence=_since_boot(snapshot),
        next_steps=(
            "nstat -az TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop   # rising?",
            "ss -tmn   # d<drops> in each socket's skmem",
        ),
        unchecked=("when they happened, and to which sockets",),
    )


# --- over a series ------------------------------------------------------------------------------


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """Drops that happened during the window: connections whose count grew between the first
    sample and the last, and the counters' rise. A holder's rise replaces the single look's
    "since they opened" for it; the others' stand."""
    first = {
        connection_key(sock): drops
        for sock in window.series[0].sockets
        if (drops := _data_drops(sock)) is not None
    }
    rose: dict[tuple[int, ...], _Holder] = {}
    for sock in window.latest.sockets:
        now = _data_drops(sock)
        before = first.get(connection_key(sock))
        if now is None or before is None or now <= before:
            continue
        holder = rose.setdefault(pids_key(sock.pids), _Holder())
        holder.add(now - before, sock.recv_queue, f"{sock.local} <- {sock.remote}")
    deltas = {delta.name: delta for delta in window.facts.counter_deltas}
    risen = [
        Evidence(
            name.split(".")[-1],
            f"+{number(deltas[name].delta)}",
            f"during the {window.seconds:.1f} s window: {meaning}",
        )
        for name, meaning in _COUNTERS
        if name in deltas and deltas[name].delta > 0
    ]
    if not rose and not risen:
        return findings
    kept = [
        finding
        for finding in findings
        if finding.code != RECEIVE_DROPS
        or (finding.subject.kind is not SubjectKind.HOST and finding.subject.pids not in rose)
    ]
    if rose:
        for pids, holder in rose.items():
            kept.append(_rising_finding(window, pids, holder, tuple(risen)))
    else:
        kept.append(_rising_finding(window, (), None, tuple(risen)))
    return kept


def _rising_finding(
    window: Window, pids: tuple[int, ...], holder: _Holder | None, counters: tuple[Evidence, ...]
) -> Finding:
    steps = (
        "ss -tmn   # d<drops> in each socket's skmem, still rising?",
        "nstat -az TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop TcpExtTCPZeroWindowDrop",
    )
    if holder is None:
        return Finding(
            code=RECEIVE_DROPS_RISING,
            severity=Severity.WARNING,
            state=None,
            blame=Blame.NONE,
            subject=Subject(kind=SubjectKind.HOST),
            count=0,
            summary=(
                f"During the {window.seconds:.1f} s window the kernel dropped arriving segments "
                "because a socket's receive queue or backlog had no room; which sockets, the "
                "samples do not show."
            ),
            evidence=counters,
            next_steps=steps,
            unchecked=("which sockets: the source gives no per-socket drops",),
        )
    index = SnapshotIndex.build(window.latest)
    return Finding(
        code=RECEIVE_DROPS_RISING,
        severity=Severity.WARNING,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids),
        count=holder.sockets,
        summary=(
            f"The kernel dropped {plural(holder.drops, 'arriving segment')} on "
            f"{plural(holder.sockets, 'connection')} of {who(index, pids)} during the "
            f"{window.seconds:.1f} s window: their receive buffer is full, or data comes "
            "beyond the window they advertise, now."
        ),
        evidence=(
            Evidence("drops", f"+{number(holder.drops)}", "skmem d, rise over the window"),
            Evidence("recv_queue_bytes", holder.recv_queue, "waiting to be read at the end"),
            *counters,
            *pid_evidence(pids),
        ),
        next_steps=steps,
    )


RULE = Rule(
    name="receive_drops",
    summary="segments dropped on arrival: per socket (skmem) and host-wide counters",
    codes=(
        Code(
            RECEIVE_DROPS,
            "the kernel dropped arriving segments: on sockets since they opened, or since boot",
            (Severity.INFO,),
        ),
        Code(
            RECEIVE_DROPS_RISING,
            "arriving segments were dropped during the window: full receive buffers now",
            (Severity.WARNING,),
            from_series=True,
        ),
    ),
    check=check,
    check_table=check_table,
    step=over_series,
)
