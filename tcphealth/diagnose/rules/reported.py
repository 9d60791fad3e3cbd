"""Counts a pasted transcript printed itself: ``ss -ant state close-wait | wc -l`` -> 634.

In an incident thread the number is often all there is -- or the six rows shown beside it are a
sample of the 26,358 it counts. The other rules judge the sockets listed; this one judges what
the paste counted but did not list, under the same thresholds where the count is about what
those thresholds are about, and says every time that the number is the paste's own.

What a count can be held to depends on what its command selected (see
:class:`tcphealth.model.ReportedCount`):

* CLOSE_WAIT's thresholds are per process. A count selected by a pid, a program or a port is
  about one holder; a count of every CLOSE_WAIT on the host is not, so alone it warns at most
  -- unless the paste shows it growing from count to count (a watch loop), which is a leak
  whoever holds them, or the kernel's log pasted beside it says the host ran out of room for
  the sockets such a pile turns into (orphans, TCP memory): the harm is then shown, and this
  pile, the cause, is as critical as the limit hit that follows from it.
* FIN_WAIT2 counted for one program is held open by it (no timer ends a FIN_WAIT2 whose
  descriptor is still open), so the held thresholds apply; a host-wide count is judged as
  orphans. Who is to blame is the story the closing rule tells of held rows: a holder the paste
  also shows keeping CLOSE_WAIT (counted under the same selection, or listed) passes one peer's
  close on as a half-close and closes neither side -- its own doing; otherwise the wait is on
  peers that do not send their FIN.
* TIME_WAIT is each a connection this host closed first. Many mean connections are not reused;
  near the ephemeral port range they may exhaust the ports toward one destination (the count
  is host-wide, so that is said as the worst case).

Only a count larger than the sockets listed in that state is judged here: when the listing
holds them all, the rules that see the sockets speak.
"""

from __future__ import annotations

import itertools

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    PORTS_RAN_OUT,
    count_holders,
    count_platform,
    log_evidence,
    logged,
    paste_count_evidence,
    platform_steps,
    ports_ran_out,
    widest_counts,
)
from tcphealth.diagnose.wording import level, number, percent, process_subject, who
from tcphealth.model import (
    Blame,
    Evidence,
    Finding,
    KernelEvent,
    ReportedCount,
    Severity,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import port_range_or_default

CLOSE_WAIT_COUNTED = "close-wait-counted"
_CLOSE_WAIT_FIX = (
    "Find where the application reads to end-of-file or errors without closing "
    "(a thread dump of the holder shows the handlers that stopped)."
)
_TIME_WAIT_FIX = "Make the client keep its connections open and reuse them."
FIN_WAIT2_COUNTED = "fin-wait2-counted"
TIME_WAIT_COUNTED = "time-wait-counted"


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    for count in widest_counts(index.snapshot.reported).values():
        listed = index.sockets(count.state)
        if count.sockets <= len(listed):
            continue
        found: Finding | None = None
        if count.state is TcpState.CLOSE_WAIT:
            found = _close_wait(index, count, thresholds)
        elif count.state is TcpState.FIN_WAIT2:
            found = _fin_wait2(index, count, thresholds)
        elif count.state is TcpState.TIME_WAIT:
            found = _time_wait(index, count, thresholds)
        if found is not None:
            findings.append(found)
    return findings


def _growing(count: ReportedCount) -> bool:
    values = (*count.earlier, count.count)
    return (
        len(values) >= 3
        and all(a <= b for a, b in itertools.pairwise(values))
        and values[-1] > values[0]
    )


def _subject(index: SnapshotIndex, pids: tuple[int, ...]) -> Subject:
    if pids:
        return process_subject(index, pids)
    return Subject(kind=SubjectKind.HOST)


# What the kernel's line says the host ran out of, beside a CLOSE_WAIT pile.
_RAN_OUT = {
    KernelEvent.ORPHANS: (
        "the orphan limit was hit at the time: the sockets such a pile becomes once closed"
    ),
    KernelEvent.TCP_MEMORY: "TCP ran out of memory at the time, which such a pile holds",
    KernelEvent.SOCKET_MEMORY: (
        "the host ran out of socket memory or of room for orphans at the time"
    ),
}


def _close_wait(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    severity = level(count.sockets, thresholds.close_wait_warning, thresholds.close_wait_critical)
    if severity is None:
        return None
    pids = count_holders(index, count)
    one_holder = bool(pids) or count.selects is not None
    growing = _growing(count)
    unchecked: list[str] = []
    # The kernel logged running out of what a closed pile turns into: the harm is shown.
    ran_out = logged(index, KernelEvent.ORPHANS, KernelEvent.SOCKET_MEMORY, KernelEvent.TCP_MEMORY)
    if not one_holder and not growing and severity is Severity.CRITICAL and not ran_out:
        severity = Severity.WARNING
        unchecked.append(
            "which process holds them: the count covers every CLOSE_WAIT on the host, and the "
            "critical level is for one process's; count them per process (ss -tanp state "
            "close-wait) to know"
        )
    if pids:
        holder = who(index, pids)
    elif count.selects is not None:
        holder = f"what `{count.selects}` selects"
    else:
        holder = "something on this host"
    trend = " and the count grows from sample to sample" if growing else ""
    evidence = paste_count_evidence(count)
    harm = ""
    if ran_out and severity is Severity.CRITICAL:
        evidence.extend(log_evidence(ran_out[0], "a limit this pile feeds was hit"))
        harm = "; the kernel's log beside the count says " + _RAN_OUT[ran_out[0].event]
        if not one_holder:
            unchecked.append(
                "which process holds them: the count covers every CLOSE_WAIT on the host; "
                "count them per process (ss -tanp state close-wait) to know"
            )
    listed = index.sockets(TcpState.CLOSE_WAIT)
    if listed and pids and not count.pids:
        evidence.append(
            Evidence(
                "listed", len(listed), "the rows the paste shows in this state, all this holder's"
            )
        )
    return Finding(
        code=CLOSE_WAIT_COUNTED,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=_subject(index, pids),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} connections in CLOSE_WAIT{trend}: their "
            f"peers closed and {holder} has not called close() on them -- at this many, a leak "
            f"or a stuck handler in the application, not a network problem{harm}."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            count_platform(index.snapshot, count),
            (
                "ss -tanp state close-wait | awk '{print $NF}' | sort | uniq -c | sort -rn | head",
                _CLOSE_WAIT_FIX,
            ),
            bsd=(
                "lsof -nP -iTCP -sTCP:CLOSE_WAIT | awk 'NR > 1 {print $1, $2}' | sort | uniq -c "
                "| sort -rn | head   # per process (macOS; lsof is a port on BSD)",
                "sockstat -46s -P tcp | grep CLOSE_WAIT | awk '{print $2, $3}' | sort | uniq -c "
                "| sort -rn | head   # per process (FreeBSD)",
                _CLOSE_WAIT_FIX,
            ),
            windows=(
                "Get-NetTCPConnection -State CloseWait | Group-Object OwningProcess | "
                "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
                "netstat -ano | findstr CLOSE_WAIT   # the last column is the pid",
                _CLOSE_WAIT_FIX,
            ),
        ),
        unchecked=(
            *unchecked,
            "the sockets themselves: the paste printed a count, not the rows, so queues, "
            "peers and ages are not known",
        ),
    )


def _fin_wait2(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    pids = count_holders(index, count)
    held = bool(pids) or count.selects is not None
    evidence = paste_count_evidence(count)
    if held:
        severity = level(
            count.sockets, thresholds.fin_wait2_held_warning, thresholds.fin_wait2_held_critical
        )
        holder = who(index, pids) if pids else f"what `{count.selects}` selects"
        relayed = _close_waits_of_same_holder(index, count, pids)
        evidence.append(
            Evidence(
                "close_wait_same_holder",
                relayed,
                "CLOSE_WAIT the paste counts or lists for the same holder: "
                + (
                    "it passes a peer's close on as a half-close and closes neither side"
                    if relayed
                    else "none, so the wait is on the peers' FIN"
                ),
            )
        )
        if relayed:
            summary = (
                f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 for "
                f"{holder}, and {number(relayed)} in CLOSE_WAIT for the same: it passes one "
                "peer's close on to the other as a half-close and closes neither socket, and "
                "no timer ends a FIN_WAIT2 that is still open -- the application must close "
                "both sides."
            )
            blame = Blame.LOCAL_APPLICATION
        else:
            summary = (
                f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 for "
                f"{holder}: it shut down its side and keeps the descriptors while its peers "
                "have not sent their FIN; no timer ends a FIN_WAIT2 that is still open, so "
                "give the application a timeout after shutdown()."
            )
            blame = Blame.REMOTE_PEER
    else:
        severity = level(count.sockets, thresholds.fin_wait2_orphan_warning, float("inf"))
        holder = ""
        summary = (
            f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 host-wide: "
            "their peers have not sent their FIN yet, and a count does not say for how long. "
            "Orphaned ones end after tcp_fin_timeout; ones a process still holds do not."
        )
        blame = Blame.REMOTE_PEER
    if severity is None:
        return None
    return Finding(
        code=FIN_WAIT2_COUNTED,
        severity=severity,
        state=TcpState.FIN_WAIT2,
        blame=blame,
        subject=_subject(index, pids),
        count=count.sockets,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            "ss -tanpo state fin-wait-2 | head   # a holder and no timer: held open",
            "sysctl net.ipv4.tcp_fin_timeout",
        ),
        unchecked=(
            "the sockets themselves: the paste printed a count, not the rows, so whether each "
            "is held by a descriptor or orphaned is not known",
        ),
    )


def _close_waits_of_same_holder(
    index: SnapshotIndex, count: ReportedCount, pids: tuple[int, ...]
) -> int:
    """CLOSE_WAIT the paste counts under the same selection as ``count``, or lists for
    ``pids``: the larger."""
    counted = max(
        (
            other.sockets
            for other in index.snapshot.reported
            if other.state is TcpState.CLOSE_WAIT
            and (other.selects, other.pids) == (count.selects, count.pids)
        ),
        default=0,
    )
    listed = (
        sum(1 for sock in index.sockets(TcpState.CLOSE_WAIT) if set(sock.pids) & set(pids))
        if pids
        else 0
    )
    return max(counted, listed)


def _time_wait(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    sysctls = index.snapshot.sysctls
    (low, high), assumed = port_range_or_default(sysctls)
    ports = high - low + 1
    ratio = count.sockets / ports if ports > 0 else 0.0
    severity = level(
        ratio, thresholds.time_wait_ports_warning_ratio, thresholds.time_wait_ports_critical_ratio
    )
    if severity is None and count.sockets >= thresholds.time_wait_counted_warning:
        severity = Severity.WARNING
    if severity is None:
        return None
    severity, ran_out = ports_ran_out(index, severity)
    evidence = paste_count_evidence(count)
    if ran_out is not None:
        evidence.append(ran_out)
    evidence.append(
        Evidence(
            "ip_local_port_range",
            f"{low}-{high}",
            ("the Linux default, assumed" if assumed else "as the paste gives it")
            + f": {number(ports)} ephemeral ports",
        )
    )
    return Finding(
        code=TIME_WAIT_COUNTED,
        severity=severity,
        state=TcpState.TIME_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.HOST),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} connections in TIME_WAIT, "
            f"{percent(ratio)} of the {number(ports)} ephemeral ports: each is a connection "
            "this host closed first, so connections are opened and closed per request instead "
            f"of reused. {_toward_one(count.sockets, ports)}, connects there fail with "
            "EADDRNOTAVAIL once the range is used up -- reuse connections (keep-alive, a pool)"
            + (PORTS_RAN_OUT if ran_out is not None else "")
            + "."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            count_platform(index.snapshot, count),
            (
                "ss -tan state time-wait | awk '{print $4}' | sort | uniq -c | sort -rn | head",
                _TIME_WAIT_FIX,
            ),
            bsd=(
                "netstat -an -p tcp | awk '$6 == \"TIME_WAIT\" {print $5}' | sort | uniq -c "
                "| sort -rn | head   # by peer",
                "sysctl net.inet.tcp.msl   # TIME_WAIT lasts twice this (milliseconds)",
                _TIME_WAIT_FIX,
            ),
            windows=(
                "Get-NetTCPConnection -State TimeWait | Group-Object RemoteAddress, RemotePort | "
                "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
                "netsh int ipv4 show dynamicport tcp   # the ephemeral port range",
                _TIME_WAIT_FIX,
            ),
        ),
        unchecked=(
            "toward whom: the paste counts TIME_WAIT host-wide, so the share of the port "
            + (
                "range used toward any one destination is at most this"
                if count.sockets <= ports
                else "range used toward any one destination is not known, and may be all of it"
            ),
        ),
    )


def _toward_one(sockets: int, ports: int) -> str:
    """Where a host-wide TIME_WAIT count would exhaust the ports: toward one destination, if
    it can all be one's; a count over the range cannot (one local address has the range toward
    each destination), so it is spread over several, any of which may be the one."""
    if sockets <= ports:
        return "If they all go to one destination"
    return (
        "That is more than one local address can hold toward one destination, so they go to "
        "several; toward each of them"
    )


RULE = Rule(
    name="reported",
    summary="counts a pasted transcript printed (wc -l, grep -c) beyond the rows it lists",
    codes=(
        Code(
            CLOSE_WAIT_COUNTED,
            "the paste's own count of CLOSE_WAIT: connections the application never closed",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            FIN_WAIT2_COUNTED,
            "the paste's own count of FIN_WAIT2: half-closed connections held open or waiting",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            TIME_WAIT_COUNTED,
            "the paste's own count of TIME_WAIT: connections closed per request, not reused",
            (Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
)
