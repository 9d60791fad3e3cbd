"""Listeners whose accept queue fills: the application is not calling accept() fast enough.

The kernel completes handshakes on its own and parks the connections in the listener's accept
queue until the application takes them. The queue holds backlog+1 connections (``ss`` shows
129/128 when full); beyond that new handshakes are dropped and ListenOverflows counts them.
SYN_RECV and never-accepted CLOSE_WAIT piling up on such a listener are this overflow too.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex, owned_by_fd
from tcphealth.diagnose.wording import number, percent, who
from tcphealth.model import (
    Blame,
    Evidence,
    Finding,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    Sysctls,
    TcpState,
)


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


def listener_owner(listener: Socket) -> tuple[int, ...]:
    return tuple(sorted(set(listener.pids))) if owned_by_fd(listener) else ()


def listener_subject(index: SnapshotIndex, listener: Socket) -> Subject:
    pids = listener_owner(listener)
    pid = pids[0] if pids else None
    return Subject(
        kind=SubjectKind.LISTENER,
        pid=pid,
        process=index.process_name(pid),
        endpoint=str(listener.local),
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


def owner_next_steps(pids: tuple[int, ...], port: int | None) -> tuple[str, ...]:
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


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    sysctls = index.snapshot.sysctls
    for listeners in index.listeners_by_port.values():
        for listener in listeners:
            finding = _check_listener(index, listener, sysctls, thresholds)
            if finding is not None:
                findings.append(finding)
    return findings


def _check_listener(
    index: SnapshotIndex, listener: Socket, sysctls: Sysctls, thresholds: Thresholds
) -> Finding | None:
    queue = assess_accept_queue(listener, sysctls)
    if queue.queued is None or queue.queued == 0:
        return None
    endpoint = str(listener.local)
    pids = listener_owner(listener)
    owner = who(index, pids) if pids else "the listener's owner"
    syn_recv = len(index.syn_recv_by_listener.get(id(listener), ()))
    unaccepted = len(index.unaccepted_close_wait_by_listener.get(id(listener), ()))

    evidence: list[Evidence] = [
        Evidence("accept_queue", queue.queued, "connections waiting for accept()"),
    ]
    if queue.backlog is not None:
        evidence.append(Evidence("listen_backlog", queue.backlog, "the kernel holds one more"))
    if queue.somaxconn is not None:
        evidence.append(Evidence("somaxconn", queue.somaxconn, "caps every listen() backlog"))
    if syn_recv:
        evidence.append(Evidence("syn_recv", syn_recv, "half-open handshakes on this port"))
    if unaccepted:
        evidence.append(
            Evidence("close_wait_unaccepted", unaccepted, "closed by the peer before accept()")
        )
    evidence.extend(overflow_counter_evidence(index))
    abort = sysctls.tcp_abort_on_overflow
    if abort is not None:
        detail = (
            "clients get a reset when the queue is full"
            if abort
            else "overflowing handshakes are dropped silently and clients retry in SYN_SENT"
        )
        evidence.append(Evidence("tcp_abort_on_overflow", abort, detail))

    unchecked = queue.unchecked(endpoint) + owner_unchecked(listener)

    queued = queue.queued  # known and non-zero here (checked above)

    def backlog_unknown() -> Finding:
        # The source gave no backlog (or only an upper bound that proves nothing): say what
        # waits in the queue and that fullness could not be checked.
        return Finding(
            code="listen-backlog-unknown",
            severity=Severity.INFO,
            state=TcpState.LISTEN,
            blame=Blame.NONE,
            subject=listener_subject(index, listener),
            count=queued,
            summary=(
                f"{number(queued)} connections wait for {owner} to accept them on "
                f"{endpoint}; the source reports no backlog, so whether the queue is full "
                "could not be checked."
            ),
            evidence=tuple(evidence),
            next_steps=owner_next_steps(pids, listener.local.port),
            unchecked=unchecked,
        )

    if queue.fill is None:
        # Without any bound we say what we saw and that fullness could not be checked.
        return backlog_unknown()

    severity = _severity(queue.fill, thresholds)
    if severity is None:
        if not queue.fill_is_lower_bound:
            return None
        # Below the bound proves nothing: the application may have asked for a smaller
        # backlog. Say so only when something on this port hints at trouble.
        if not (syn_recv or unaccepted):
            return None
        return backlog_unknown()

    fill_text = f"its accept queue holds {number(queue.queued)} for {queue.limit_text()}" + (
        f" ({percent(queue.fill)} or more)" if queue.fill_is_lower_bound else ""
    )
    also = []
    if syn_recv:
        also.append(f"{number(syn_recv)} SYN_RECV")
    if unaccepted:
        also.append(f"{number(unaccepted)} CLOSE_WAIT")
    also_text = (
        f"; the {' and '.join(also)} on this port are connections stuck behind the full queue, "
        "not a SYN flood or a close() leak"
        if also and severity is Severity.CRITICAL
        else ""
    )
    if severity is Severity.CRITICAL:
        code = "listen-queue-full"
        summary = (
            f"On {endpoint}, {owner} is not accepting connections fast enough: {fill_text}, "
            f"so new handshakes are dropped{also_text}."
        )
    else:
        code = "listen-queue-filling"
        summary = f"On {endpoint}, {owner} is falling behind in accepting connections: {fill_text}."
    return Finding(
        code=code,
        severity=severity,
        state=TcpState.LISTEN,
        blame=Blame.LOCAL_APPLICATION,
        subject=listener_subject(index, listener),
        count=queue.queued,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=owner_next_steps(pids, listener.local.port),
        unchecked=unchecked,
    )


def _severity(fill: float, thresholds: Thresholds) -> Severity | None:
    if fill >= thresholds.accept_queue_critical_ratio:
        return Severity.CRITICAL
    if fill >= thresholds.accept_queue_warning_ratio:
        return Severity.WARNING
    return None
