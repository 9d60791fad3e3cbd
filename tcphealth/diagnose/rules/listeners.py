"""Listeners whose accept queue fills: the application is not calling accept() fast enough.

The kernel completes handshakes on its own and parks the connections in the listener's accept
queue until the application takes them. The queue holds backlog+1 connections (``ss`` shows
129/128 when full); beyond that new handshakes are dropped and ListenOverflows counts them.
SYN_RECV and never-accepted CLOSE_WAIT piling up on such a listener are this overflow too.

Where the source gives no backlog (netstat, a copy of /proc), a queue of exactly one more than a
backlog programs and distributions commonly use (128, 511 and 4096 among them) is the mark of a
full queue: the kernel never queues more than backlog+1, and a queue sitting at one of those
numbers is much likelier at its ceiling than there by chance. That is said as an assumption,
with the command that reads the real backlog.

ListenOverflows counts since boot. When it is above zero and no listener's queue is full or
filling now, the overflows happened at some other moment: one look cannot say when or where,
so it is information, with the listeners whose short backlogs overflow first under a burst
and the commands that show whether it still happens. One case says where: a paste whose listing
shows every listener of the host (``ss -lnt`` unfiltered) and holds only one, with a backlog
shorter than the 128 the kernel and most servers default to (the JDK's 50, say). Taking the
overflows to be that listener's -- an assumption, said: the counter names none, and a listener
since closed could have had them -- its backlog is too short for the bursts it gets, a warning
once the counter holds listen_overflowed_warning drops. When stays unknown, and is said so.
"""

from __future__ import annotations

from dataclasses import replace

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    assess_accept_queue,
    listener_owner,
    listener_subject,
    overflow_counter_evidence,
    owner_next_steps,
    owner_unchecked,
    platform_steps,
)
from tcphealth.diagnose.wording import level, number, percent, who
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

# Backlogs in common use -- the kernel's old and new somaxconn defaults (128, 4096), nginx and
# redis (511), and round powers of two -- so a queue of one more is a full one.
_USUAL_BACKLOGS = (128, 256, 511, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65535)
_FULL_AT_USUAL_BACKLOG = {backlog + 1: backlog for backlog in _USUAL_BACKLOGS}

LISTEN_QUEUE_FULL = "listen-queue-full"
LISTEN_QUEUE_FILLING = "listen-queue-filling"
LISTEN_BACKLOG_UNKNOWN = "listen-backlog-unknown"
LISTEN_OVERFLOWED = "listen-overflowed"
LISTEN_OVERFLOWED_SHORT_BACKLOG = "listen-overflowed-short-backlog"
# The kernel's somaxconn before Linux 5.4 and the lowest backlog in common use: a listener
# below it was given a short queue on purpose or by an API's default (the JDK's 50).
_SHORT_BACKLOG = 128
# How many of the shortest backlogs the since-boot finding names.
_SHORTEST_SHOWN = 3


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    sysctls = index.snapshot.sysctls
    for listeners in index.listeners_by_port.values():
        for listener in listeners:
            finding = _check_listener(index, listener, sysctls, thresholds)
            if finding is not None:
                findings.append(finding)
    # A listener whose port a paste hid (a placeholder such as <listen_port>) is in no port's
    # list: nothing can be matched to it by port, but its own queue still says how full it is.
    for listener in index.sockets(TcpState.LISTEN):
        if listener.local.port is None:
            finding = _check_listener(index, listener, sysctls, thresholds)
            if finding is not None:
                hidden = "which port it listens on: the source does not show the port"
                findings.append(replace(finding, unchecked=(*finding.unchecked, hidden)))
    if not any(f.code in (LISTEN_QUEUE_FULL, LISTEN_QUEUE_FILLING) for f in findings):
        overflowed = _overflowed_since_boot(index, thresholds)
        if overflowed is not None:
            findings.append(overflowed)
    return findings


def _overflowed_since_boot(index: SnapshotIndex, thresholds: Thresholds) -> Finding | None:
    """Accept queues overflowed since boot, none full or filling now (the caller checks)."""
    counters = index.snapshot.counters
    overflows = counters.get("TcpExt.ListenOverflows")
    if not overflows:
        return None
    if overflows >= thresholds.listen_overflowed_warning:
        only = _only_listener_short(index)
        if only is not None:
            return _overflowed_on_short_backlog(index, only, overflows)
    evidence = [
        Evidence(
            "ListenOverflows",
            overflows,
            "handshakes dropped since boot because a listener's accept queue was full",
        )
    ]
    drops = counters.get("TcpExt.ListenDrops")
    if drops:
        evidence.append(Evidence("ListenDrops", drops, "all drops at listeners since boot"))
    shortest = sorted(
        (s for s in index.sockets(TcpState.LISTEN) if s.listen_backlog is not None),
        key=lambda s: (s.listen_backlog or 0, s.local.port or 0),
    )[:_SHORTEST_SHOWN]
    for listener in shortest:
        waiting = (
            "" if listener.recv_queue is None else f", {number(listener.recv_queue)} waiting now"
        )
        evidence.append(
            Evidence("listen_backlog", listener.listen_backlog, f"on {listener.local}{waiting}")
        )
    somaxconn = index.snapshot.sysctls.somaxconn
    if somaxconn is not None:
        evidence.append(Evidence("somaxconn", somaxconn, "caps every listen() backlog"))
    short = ""
    if shortest:
        first = shortest[0]
        short = (
            f" The shortest backlog listed is {number(first.listen_backlog or 0)}, on "
            f"{first.local}: a short queue is the first to overflow when connections "
            "arrive in a burst."
        )
    # "None full now" is a fact only where the input shows listeners' queues: a pasted
    # `netstat -s` alone shows none.
    queues_shown = any(s.recv_queue is not None for s in index.sockets(TcpState.LISTEN))
    now = (
        "no queue is full or filling now, so one look cannot say when it happened or on which "
        "listener."
        if queues_shown
        else "the input shows no listener's queue, so neither whether one is full now nor "
        "when it happened or on which listener is known."
    )
    unchecked = ["when, and on which listener: the counter is host-wide and counts since boot"]
    if not queues_shown:
        unchecked.append(
            "whether an accept queue is full now: the input lists no listener with its queue "
            "(ss -ltn shows each one's waiting connections against its backlog)"
        )
    return Finding(
        code=LISTEN_OVERFLOWED,
        severity=Severity.INFO,
        state=None,
        blame=Blame.NONE,
        subject=Subject(kind=SubjectKind.HOST),
        count=0,  # handshakes since boot, not sockets now: the evidence gives them
        summary=(
            f"Since boot the kernel dropped {number(overflows)} incoming connections because "
            f"a listener's accept queue was full; {now}" + short
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                "nstat -az TcpExtListenOverflows TcpExtListenDrops   # twice, a minute apart: "
                "still rising?",
                "ss -ltn   # per listener: Recv-Q (waiting) against Send-Q (backlog)",
                "tcphealth --samples 3   # sees the counter rise and the queue that fills",
            ),
            bsd=(
                "netstat -s -p tcp | grep -i 'listen queue'   # twice: still rising?",
                "netstat -Lan   # per listener: queue length against its limit",
            ),
        ),
        unchecked=tuple(unchecked),
    )


def _only_listener_short(index: SnapshotIndex) -> Socket | None:
    """The host's one listener, where the paste shows every listener and there is only one
    (its IPv4 and IPv6 sockets on one port count as one), with a backlog shorter than
    _SHORT_BACKLOG; else None."""
    if not index.snapshot.every_listener_shown:
        return None
    listeners = index.sockets(TcpState.LISTEN)
    ports = {listener.local.port for listener in listeners}
    if not listeners or len(ports) != 1 or None in ports:
        return None
    backlogs = [listener.listen_backlog for listener in listeners]
    if any(backlog is None or backlog >= _SHORT_BACKLOG for backlog in backlogs):
        return None
    return min(listeners, key=lambda listener: listener.listen_backlog or 0)


def _overflowed_on_short_backlog(index: SnapshotIndex, listener: Socket, overflows: int) -> Finding:
    """Overflows since boot on a host whose one listener has a short backlog: the likely
    place, said as an assumption; when it happened stays unknown."""
    backlog = listener.listen_backlog or 0
    somaxconn = index.snapshot.sysctls.somaxconn
    capped = somaxconn is not None and somaxconn <= backlog
    pids = listener_owner(listener)
    owner = who(index, pids) if pids else "its owner"
    evidence = [
        Evidence(
            "ListenOverflows",
            overflows,
            "handshakes dropped since boot because a listener's accept queue was full",
        ),
        Evidence(
            "listen_backlog",
            backlog,
            f"on {listener.local}, the only listener the paste's listing shows, with "
            f"{number(listener.recv_queue or 0)} waiting now",
        ),
    ]
    drops = index.snapshot.counters.get("TcpExt.ListenDrops")
    if drops:
        evidence.append(Evidence("ListenDrops", drops, "all drops at listeners since boot"))
    if somaxconn is not None:
        evidence.append(Evidence("somaxconn", somaxconn, "caps every listen() backlog"))
    fix = (
        f"net.core.somaxconn ({number(somaxconn or 0)}) caps it: raise that, and the "
        "backlog the application asks for"
        if capped
        else f"raise the backlog {owner} passes to listen() (somaxconn caps it)"
    )
    return Finding(
        code=LISTEN_OVERFLOWED_SHORT_BACKLOG,
        severity=Severity.WARNING,
        state=TcpState.LISTEN,
        blame=Blame.KERNEL_LIMIT if capped else Blame.LOCAL_APPLICATION,
        subject=listener_subject(index, listener),
        count=0,  # handshakes since boot, not sockets now: the evidence gives them
        summary=(
            f"Since boot the kernel dropped {number(overflows)} incoming connections because "
            f"an accept queue was full, and the one listener the paste's listing shows, "
            f"{listener.local}, has a backlog of {number(backlog)} -- shorter than the "
            f"{_SHORT_BACKLOG} the kernel and most servers default to, so a burst of more "
            f"than {number(backlog + 1)} connections arriving faster than it accepts them "
            "overflows it. Taking the drops to be its own, the queue is too short for the "
            f"bursts it gets: {fix}. Its queue is not full now, so when they happened one look "
            "cannot say."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                "nstat -az TcpExtListenOverflows   # twice, a minute apart: still rising?",
                f"ss -ltn 'sport = :{listener.local.port}'   # its queue against its backlog",
                "sysctl net.core.somaxconn",
            ),
            bsd=(
                "netstat -s -p tcp | grep -i 'listen queue'   # twice: still rising?",
                "netstat -Lan   # per listener: queue length against its limit",
            ),
        ),
        unchecked=(
            f"that the drops were {listener.local}'s: the counter is host-wide and names no "
            "listener; the paste shows no other now, but one since closed could have had them",
            "when: the counter counts since boot; read twice a minute apart, it says whether "
            "the queue still overflows",
            *owner_unchecked(listener),
        ),
    )


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
    if listener.drops:
        # A listener's sk_drops counts the handshakes it dropped (tcp_listendrop: a full accept
        # queue, or a failed child socket), so unlike the host-wide counters below it is about
        # this listener alone.
        evidence.append(
            Evidence(
                "handshakes_dropped",
                listener.drops,
                "by this listener since it opened (skmem d), when its queue was full",
            )
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
            code=LISTEN_BACKLOG_UNKNOWN,
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
            next_steps=owner_next_steps(pids, listener.local.port, index.snapshot.host.platform),
            unchecked=unchecked,
        )

    # Only where nothing proves it: somaxconn below the queue proves a full queue outright.
    assumed = (
        _FULL_AT_USUAL_BACKLOG.get(queued)
        if queue.backlog is None and not queue.is_full(thresholds)
        else None
    )
    if assumed is not None and (queue.somaxconn is None or queue.somaxconn >= assumed):
        return _full_at_assumed_backlog(index, listener, queued, assumed, evidence, owner, pids)

    if queue.fill is None:
        # Without any bound we say what we saw and that fullness could not be checked.
        return backlog_unknown()

    severity = level(
        queue.fill, thresholds.accept_queue_warning_ratio, thresholds.accept_queue_critical_ratio
    )
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
        code = LISTEN_QUEUE_FULL
        summary = (
            f"On {endpoint}, {owner} is not accepting connections fast enough: {fill_text}, "
            f"so new handshakes are dropped{also_text}."
        )
    else:
        code = LISTEN_QUEUE_FILLING
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
        next_steps=owner_next_steps(pids, listener.local.port, index.snapshot.host.platform),
        unchecked=unchecked,
    )


def _full_at_assumed_backlog(
    index: SnapshotIndex,
    listener: Socket,
    queued: int,
    assumed: int,
    evidence: list[Evidence],
    owner: str,
    pids: tuple[int, ...],
) -> Finding:
    """A queue of exactly a usual backlog + 1, where the source gives no backlog."""
    endpoint = str(listener.local)
    return Finding(
        code=LISTEN_QUEUE_FULL,
        severity=Severity.CRITICAL,
        state=TcpState.LISTEN,
        blame=Blame.LOCAL_APPLICATION,
        subject=listener_subject(index, listener),
        count=queued,
        summary=(
            f"On {endpoint}, {owner} is most likely not accepting connections: "
            f"{number(queued)} wait in its accept queue, one more than the common backlog of "
            f"{number(assumed)} -- the most a full queue holds -- so new handshakes are likely "
            "being dropped. The backlog is assumed; the source does not give it."
        ),
        evidence=(
            *evidence,
            Evidence(
                "assumed_backlog",
                assumed,
                "an assumption: a queue of backlog+1 is full, and the source gives no backlog",
            ),
        ),
        next_steps=owner_next_steps(pids, listener.local.port, index.snapshot.host.platform),
        unchecked=(
            *owner_unchecked(listener),
            f"the real backlog of {endpoint}: a backlog of {number(assumed)} is assumed from the "
            f"queue of {number(queued)} (ss -ltn shows it as Send-Q)",
        ),
    )


RULE = Rule(
    name="listeners",
    summary="accept queues at or near their backlog",
    codes=(
        Code(
            LISTEN_QUEUE_FULL,
            "a listener's accept queue is full, so the kernel drops new handshakes",
            (Severity.CRITICAL,),
            explains_counters=("TcpExt.ListenOverflows",),
        ),
        Code(
            LISTEN_QUEUE_FILLING,
            "a listener's accept queue is filling: its process accepts too slowly",
            (Severity.WARNING,),
        ),
        Code(
            LISTEN_BACKLOG_UNKNOWN,
            "connections wait on a listener whose backlog the source does not give",
            (Severity.INFO,),
        ),
        Code(
            LISTEN_OVERFLOWED,
            "accept queues overflowed since boot; none is full or filling now",
            (Severity.INFO,),
            since_boot_of=("TcpExt.ListenOverflows",),
        ),
        Code(
            LISTEN_OVERFLOWED_SHORT_BACKLOG,
            "accept queues overflowed since boot, and the host's one listener has a short "
            "backlog: taken to be where, said as an assumption",
            (Severity.WARNING,),
            since_boot_of=("TcpExt.ListenOverflows",),
        ),
    ),
    check=check,
)
