"""Host-wide limits the kernel enforces on TCP as a whole, read from /proc/net/sockstat and the
conntrack count against their sysctls.

* Orphans (sockets no application holds any more: FIN_WAIT1, LAST_ACK, CLOSING, orphaned
  FIN_WAIT2) over ``tcp_max_orphans``: the kernel resets them and logs "too many orphaned
  sockets"; each may pin up to about 64 KB of memory that cannot be swapped.
* TCP memory (sockstat ``mem``, in pages) against ``tcp_mem`` (low, pressure, high, in pages):
  past the second number the kernel is in memory pressure and shrinks buffers; past the third
  it refuses allocations, aborts connections (TCPAbortOnMemory) and logs "out of memory --
  consider tuning tcp_mem".
* The connection-tracking table against ``nf_conntrack_max``: when full, new flows' first
  packets are dropped ("nf_conntrack: table full, dropping packet"), so connects time out. The
  count is per network namespace, the limit global to the host.

These numbers are the host's now, and the counters count since boot: one look shows where the
host stands and whether it has happened, a series whether it is happening. A pasted kernel log
line (sources/text/kernel_log.py) is a third kind of fact: the limit was hit at the time of the
line. It makes the finding on its own, at the severity of the limit reached -- WARNING instead
where the paste's own reading of the same limit shows room, since the paste does not say which
came first -- and says that it is about then, not now.

Cause or consequence: orphans are connections already closed, so an orphan limit hit beside a
pile of CLOSE_WAIT (which become orphans, LAST_ACK, as they are closed) is that pile's
consequence; the pile's own finding is the cause and is listed first (its count is of sockets,
the log's finding counts none of its own). Connections aborted
for lack of memory during a series (TCPAbortOnMemory rising) are a finding of their own, whatever
the memory reads at the moments sampled: the pressure comes and goes between samples, the aborts
stay counted.
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.shared import (
    STILL_UNKNOWN,
    log_evidence,
    logged,
    logged_times,
    logged_when,
    pile,
)
from tcphealth.diagnose.wording import level, number, percent, plural
from tcphealth.model import (
    Blame,
    Evidence,
    Finding,
    KernelEvent,
    KernelMessage,
    Severity,
    Subject,
    SubjectKind,
    TcpState,
)

ORPHANS = "orphans-near-limit"
TCP_MEMORY = "tcp-memory-pressure"
CONNTRACK = "conntrack-table-full"
MEMORY_ABORTS_RISING = "tcp-memory-aborts-rising"

_ABORTS = "TcpExt.TCPAbortOnMemory"
_PRESSURES = "TcpExt.TCPMemoryPressures"

_HOST = Subject(kind=SubjectKind.HOST)


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    found = (
        _orphans(index, thresholds),
        _tcp_memory(index, thresholds),
        _conntrack(index, thresholds),
    )
    return [finding for finding in found if finding is not None]


def _logged_severity(ratio: float | None, thresholds: Thresholds) -> Severity:
    """A limit the kernel logged hitting: at its ceiling, unless the paste's own reading of
    it shows room (then it was hit, and is not at the moment of the look)."""
    if ratio is not None and ratio < thresholds.kernel_limit_warning_ratio:
        return Severity.WARNING
    return Severity.CRITICAL


def _orphans(index: SnapshotIndex, thresholds: Thresholds) -> Finding | None:
    orphans = index.snapshot.counters.get("sockstat.TCP.orphan")
    limit = index.snapshot.sysctls.tcp_max_orphans
    logs = logged(index, KernelEvent.ORPHANS)
    if not logs and _old_line_is_orphans(index):
        logs = logged(index, KernelEvent.SOCKET_MEMORY)
    if logs:
        return _orphans_logged(index, logs[0], orphans, limit, thresholds)
    if orphans is None or limit is None or limit <= 0:
        return None
    ratio = orphans / limit
    severity = level(
        ratio, thresholds.kernel_limit_warning_ratio, thresholds.kernel_limit_critical_ratio
    )
    if severity is None:
        return None
    over = orphans >= limit
    return Finding(
        code=ORPHANS,
        severity=severity,
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=orphans,
        summary=(
            f"{number(orphans)} sockets that no application holds any more wait to finish "
            f"closing, {percent(ratio)} of tcp_max_orphans ({number(limit)}): "
            + (
                "the kernel is resetting orphans instead of closing them cleanly."
                if over
                else "past the limit the kernel resets them instead of closing them cleanly."
            )
        ),
        evidence=(
            Evidence("orphans", orphans, "sockstat TCP orphan, host-wide"),
            Evidence("tcp_max_orphans", limit, "above it orphans are reset"),
        ),
        next_steps=(
            "cat /proc/net/sockstat",
            "ss -tan state fin-wait-1 state last-ack state closing | awk '{print $4}' | sort "
            "| uniq -c | sort -rn | head   # which peers never acknowledge our FIN",
            "dmesg | grep -i 'too many orphaned sockets'",
            "Find the peers that do not acknowledge FINs. Raising tcp_max_orphans costs up to "
            "about 64 KB of unswappable memory per orphan.",
        ),
        unchecked=("the count is host-wide: which application closed them is not recorded",),
    )


def _old_line_is_orphans(index: SnapshotIndex) -> bool:
    """The old 'Out of socket memory' line is for orphans when the paste's own reading shows
    them over tcp_max_orphans and TCP's memory (where shown) under tcp_mem's hard limit."""
    orphans = index.snapshot.counters.get("sockstat.TCP.orphan")
    limit = index.snapshot.sysctls.tcp_max_orphans
    pages = index.snapshot.counters.get("sockstat.TCP.mem")
    tcp_mem = index.snapshot.sysctls.tcp_mem
    if orphans is None or not limit or orphans < limit:
        return False
    return pages is None or tcp_mem is None or pages < tcp_mem[2]


def _orphans_logged(
    index: SnapshotIndex,
    message: KernelMessage,
    orphans: int | None,
    limit: int | None,
    thresholds: Thresholds,
) -> Finding:
    ratio = orphans / limit if orphans is not None and limit else None
    severity = _logged_severity(ratio, thresholds)
    limit_text = f" ({number(limit)})" if limit else ""
    old = message.event is KernelEvent.SOCKET_MEMORY
    said = (
        "'Out of socket memory' (an older kernel's line for either the orphan or the tcp_mem "
        "limit; the paste's sockstat shows the orphans over theirs)"
        if old
        else "'too many orphaned sockets'"
    )
    summary = (
        f"The kernel logged {said} {logged_times(message)} "
        f"({logged_when(message)}): at the time of the log line the sockets no application "
        f"holds any more were over tcp_max_orphans{limit_text} -- or over a half or a quarter "
        "of it, for connections whose peer had gone silent -- and the kernel reset them "
        "instead of closing them cleanly."
    )
    evidence = list(
        log_evidence(message, "orphans over the limit, so orphaned connections were reset")
    )
    if orphans is not None:
        evidence.append(Evidence("orphans", orphans, "sockstat TCP orphan, at the paste's look"))
        if ratio is not None:
            summary += (
                f" The paste's own count at its look is {number(orphans)}, "
                f"{percent(ratio)} of the limit."
            )
    if limit:
        evidence.append(Evidence("tcp_max_orphans", limit, "above it orphans are reset"))
    # Orphans are connections already closed: what the paste shows that becomes one.
    held = pile(index, TcpState.CLOSE_WAIT)
    closing = sum(
        len(index.sockets(state))
        for state in (TcpState.FIN_WAIT1, TcpState.LAST_ACK, TcpState.CLOSING)
    )
    if held >= thresholds.close_wait_warning:
        evidence.append(
            Evidence("close_wait", held, "held by an application; orphans once it closes them")
        )
        summary += (
            f" The paste counts {number(held)} CLOSE_WAIT beside it: connections an application "
            "holds, which turn into orphans (LAST_ACK) as they are closed, so the limit reads "
            "as a consequence of that pile, not its cause."
        )
    elif closing:
        evidence.append(
            Evidence("closing_listed", closing, "FIN_WAIT1, LAST_ACK and CLOSING in the listing")
        )
        summary += (
            f" The listing shows {number(closing)} of them still closing (FIN_WAIT1, LAST_ACK, "
            "CLOSING): peers that do not acknowledge this host's FIN keep them."
        )
    unchecked = [STILL_UNKNOWN]
    if orphans is None or not limit:
        unchecked.append(
            "the orphans and tcp_max_orphans at the paste's look: cat /proc/net/sockstat and "
            "sysctl net.ipv4.tcp_max_orphans are not in it"
        )
    return Finding(
        code=ORPHANS,
        severity=severity,
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=orphans or 0,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            "cat /proc/net/sockstat; sysctl net.ipv4.tcp_max_orphans   # now, against the limit",
            "nstat -az TcpExtTCPAbortOnMemory   # twice, a minute apart: still resetting?",
            "ss -tan state fin-wait-1 state last-ack state closing | awk '{print $4}' | sort "
            "| uniq -c | sort -rn | head   # which peers never acknowledge our FIN",
            "Close what piles up (held CLOSE_WAIT, connections peers never finish). Raising "
            "tcp_max_orphans costs up to about 64 KB of unswappable memory per orphan.",
        ),
        unchecked=tuple(unchecked),
    )


def _tcp_memory_logged(
    index: SnapshotIndex, message: KernelMessage, thresholds: Thresholds
) -> Finding:
    pages = index.snapshot.counters.get("sockstat.TCP.mem")
    tcp_mem = index.snapshot.sysctls.tcp_mem
    aborts = index.snapshot.counters.get(_ABORTS)
    # Room now: below the pressure threshold at the paste's look.
    ratio = pages / tcp_mem[1] if pages is not None and tcp_mem and tcp_mem[1] else None
    severity = _logged_severity(ratio, thresholds)
    when = f"{logged_times(message)} ({logged_when(message)})"
    unchecked = [STILL_UNKNOWN]
    if message.event is KernelEvent.SOCKET_MEMORY:
        summary = (
            f"The kernel logged 'Out of socket memory' {when}: kernels before 3.x print this "
            "line for either of two limits -- orphans over tcp_max_orphans, or TCP's memory "
            "over tcp_mem's hard limit -- and at the time of the log line reset connections "
            "for it."
        )
        meaning = "an older kernel's line for either the orphan or the tcp_mem limit"
        unchecked.append(
            "which of the two limits: /proc/net/sockstat's orphan and mem against "
            "tcp_max_orphans and tcp_mem at the time would tell"
        )
    else:
        summary = (
            f"The kernel logged 'out of memory -- consider tuning tcp_mem' {when}: at the "
            "time of the log line TCP's memory was over tcp_mem's hard limit, so the kernel "
            "refused socket buffers and reset connections."
        )
        meaning = "TCP's memory over tcp_mem's third number: buffers refused, connections reset"
    evidence = list(log_evidence(message, meaning))
    if pages is not None and tcp_mem is not None:
        summary += (
            f" At the paste's look TCP uses {number(pages)} pages (pressure from "
            f"{number(tcp_mem[1])}, hard limit {number(tcp_mem[2])})."
        )
        evidence.append(Evidence("tcp_memory_pages", pages, "sockstat TCP mem, at the look"))
        evidence.append(Evidence("tcp_mem", " ".join(map(str, tcp_mem)), "pages"))
    else:
        unchecked.append(
            "TCP's memory and tcp_mem at the paste's look: /proc/net/sockstat and sysctl "
            "net.ipv4.tcp_mem are not in it"
        )
    if aborts is not None:
        evidence.append(
            Evidence("TCPAbortOnMemory", aborts, "connections aborted for lack of memory")
        )
    return Finding(
        code=TCP_MEMORY,
        severity=severity,
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=0,  # pages, not sockets
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            "cat /proc/net/sockstat; sysctl net.ipv4.tcp_mem net.ipv4.tcp_max_orphans",
            "nstat -az TcpExtTCPAbortOnMemory TcpExtTCPMemoryPressures   # still rising?",
            "ss -tmn | grep -B1 skmem | head -40   # which sockets hold the buffers",
        ),
        unchecked=tuple(unchecked),
    )


def _tcp_memory(index: SnapshotIndex, thresholds: Thresholds) -> Finding | None:
    logs = logged(index, KernelEvent.TCP_MEMORY)
    if not logs and not _old_line_is_orphans(index):
        logs = logged(index, KernelEvent.SOCKET_MEMORY)
    if logs:
        return _tcp_memory_logged(index, logs[0], thresholds)
    counters = index.snapshot.counters
    pages = counters.get("sockstat.TCP.mem")
    tcp_mem = index.snapshot.sysctls.tcp_mem
    pressures = counters.get(_PRESSURES)
    aborts = counters.get(_ABORTS)
    if pages is None or tcp_mem is None:
        return None
    low, pressure, high = tcp_mem
    history = [
        Evidence(name, value, detail)
        for name, value, detail in (
            ("TCPMemoryPressures", pressures, "times TCP entered memory pressure since boot"),
            ("TCPAbortOnMemory", aborts, "connections aborted for lack of memory since boot"),
        )
        if value is not None
    ]
    evidence = (
        Evidence("tcp_memory_pages", pages, "sockstat TCP mem, host-wide"),
        Evidence("tcp_mem", f"{low} {pressure} {high}", "pages: low, pressure, high"),
        *history,
    )
    steps = (
        "cat /proc/net/sockstat",
        "sysctl net.ipv4.tcp_mem",
        "ss -tmn | grep -B1 skmem | head -40   # which sockets hold the buffers",
        "nstat -az TcpExtTCPMemoryPressures TcpExtTCPAbortOnMemory   # rising?",
        "dmesg | grep -i 'consider tuning tcp_mem'",
    )
    if pages >= high:
        severity = Severity.CRITICAL
        summary = (
            f"TCP uses {number(pages)} pages of memory, at or over tcp_mem's hard limit of "
            f"{number(high)}: the kernel refuses new buffers and aborts connections "
            "('out of memory -- consider tuning tcp_mem')."
        )
    elif pages >= pressure:
        severity = Severity.WARNING
        summary = (
            f"TCP uses {number(pages)} pages of memory, past tcp_mem's pressure threshold of "
            f"{number(pressure)} (hard limit {number(high)}): the kernel is shrinking socket "
            "buffers, which slows every connection."
        )
    elif aborts:
        severity = Severity.INFO
        summary = (
            f"TCP memory is below tcp_mem's pressure threshold now ({number(pages)} of "
            f"{number(pressure)} pages), but {number(aborts)} connections have been aborted for "
            "lack of memory since boot: it ran out before."
        )
    else:
        return None
    return Finding(
        code=TCP_MEMORY,
        severity=severity,
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=0,  # pages, not sockets: the evidence gives them
        summary=summary,
        evidence=evidence,
        next_steps=steps,
        unchecked=("which sockets hold the memory: the snapshot has no per-socket buffers",),
    )


def _conntrack(index: SnapshotIndex, thresholds: Thresholds) -> Finding | None:
    count = index.snapshot.counters.get("conntrack.count")
    limit = index.snapshot.sysctls.nf_conntrack_max
    logs = logged(index, KernelEvent.CONNTRACK_FULL)
    if logs:
        return _conntrack_logged(logs[0], count, limit, thresholds)
    if count is None or limit is None or limit <= 0:
        return None
    ratio = count / limit
    severity = level(
        ratio, thresholds.kernel_limit_warning_ratio, thresholds.kernel_limit_critical_ratio
    )
    if severity is None:
        return None
    full = count >= limit
    return Finding(
        code=CONNTRACK,
        severity=severity,
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=0,  # flows of every protocol, not sockets: the evidence gives them
        summary=(
            f"The connection-tracking table holds {number(count)} entries, {percent(ratio)} "
            f"of nf_conntrack_max ({number(limit)}): "
            + (
                "it is full, so the first packet of each new flow is dropped and connects time out."
                if full
                else "when it fills, the first packet of each new flow is dropped."
            )
        ),
        evidence=(
            Evidence("conntrack_entries", count, "in this network namespace"),
            Evidence("nf_conntrack_max", limit, "one limit for the whole host"),
        ),
        next_steps=(
            "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max",
            "conntrack -S   # drop and early_drop per CPU",
            "dmesg | grep -i 'nf_conntrack: table full'",
            "conntrack -L -p tcp | awk '{print $4}' | sort | uniq -c   # entries per state",
        ),
        unchecked=(
            "entries of other network namespaces: they count against the same global limit "
            "and were not read",
        ),
    )


def _conntrack_logged(
    message: KernelMessage, count: int | None, limit: int | None, thresholds: Thresholds
) -> Finding:
    ratio = count / limit if count is not None and limit else None
    summary = (
        f"The kernel logged 'nf_conntrack: table full, dropping packet' "
        f"{logged_times(message)} ({logged_when(message)}): at the time of the log line the "
        "connection-tracking table was full and no entry could be evicted early, so the first "
        "packet of new flows was dropped -- connects to and from this host timed out."
    )
    evidence = list(log_evidence(message, "the table full: new flows' packets dropped"))
    unchecked = [STILL_UNKNOWN]
    if count is not None and limit:
        summary += (
            f" At the paste's look it holds {number(count)} entries of {number(limit)} "
            f"({percent(count / limit)})."
        )
        evidence.append(Evidence("conntrack_entries", count, "at the paste's look"))
        evidence.append(Evidence("nf_conntrack_max", limit, "one limit for the whole host"))
    else:
        unchecked.append(
            "the table's count and limit at the paste's look: sysctl "
            "net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max is not in it"
        )
    return Finding(
        code=CONNTRACK,
        severity=_logged_severity(ratio, thresholds),
        state=None,
        blame=Blame.KERNEL_LIMIT,
        subject=_HOST,
        count=0,  # flows of every protocol, not sockets
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max",
            "conntrack -S   # drop and early_drop per CPU: still rising?",
            "conntrack -L -p tcp | awk '{print $4}' | sort | uniq -c   # entries per state",
        ),
        unchecked=tuple(unchecked),
    )


# --- over a series ------------------------------------------------------------------------------


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """Connections aborted for lack of TCP memory during the window: the kernel is killing
    connections now. The single look's "it ran out before" (tcp-memory-pressure at INFO) says
    the opposite of what the series shows, so it gives way; a pressure finding at WARNING or
    CRITICAL stays, as the memory's state at the last sample."""
    deltas = {delta.name: delta for delta in window.facts.counter_deltas}
    aborts = deltas.get(_ABORTS)
    if aborts is None or aborts.delta <= 0:
        return findings
    kept = [
        finding
        for finding in findings
        if not (finding.code == TCP_MEMORY and finding.severity is Severity.INFO)
    ]
    evidence = [
        Evidence(
            "TCPAbortOnMemory",
            f"+{number(aborts.delta)}",
            f"{aborts.per_second:.1f}/s during the {window.seconds:.1f} s window",
        )
    ]
    pressures = deltas.get(_PRESSURES)
    if pressures is not None and pressures.delta > 0:
        evidence.append(
            Evidence(
                "TCPMemoryPressures",
                f"+{number(pressures.delta)}",
                "times TCP entered memory pressure during the window",
            )
        )
    counters = window.latest.counters
    pages = counters.get("sockstat.TCP.mem")
    tcp_mem = window.latest.sysctls.tcp_mem
    if pages is not None:
        evidence.append(Evidence("tcp_memory_pages", pages, "sockstat TCP mem at the last sample"))
    if tcp_mem is not None:
        evidence.append(
            Evidence("tcp_mem", " ".join(map(str, tcp_mem)), "pages: low, pressure, high")
        )
    orphans = counters.get("sockstat.TCP.orphan")
    orphan_limit = window.latest.sysctls.tcp_max_orphans
    if orphans is not None and orphan_limit is not None:
        evidence.append(Evidence("orphans", orphans, f"of tcp_max_orphans {number(orphan_limit)}"))
    unchecked = (
        ("the memory between the samples: it may have peaked at tcp_mem's hard limit unseen",)
        if pages is None or tcp_mem is None or pages < tcp_mem[2]
        else ()
    )
    kept.append(
        Finding(
            code=MEMORY_ABORTS_RISING,
            severity=Severity.CRITICAL,
            state=None,
            blame=Blame.KERNEL_LIMIT,
            subject=_HOST,
            count=aborts.delta,
            summary=(
                f"The kernel aborted {plural(aborts.delta, 'connection')} for lack of TCP memory "
                f"during the {window.seconds:.1f} s window ({aborts.per_second:.1f}/s): TCP's "
                "memory passed tcp_mem's hard limit or the orphans passed tcp_max_orphans (the "
                "kernel counts both here), and the peers of those connections saw resets."
            ),
            evidence=tuple(evidence),
            next_steps=(
                "cat /proc/net/sockstat   # TCP mem, in pages, against sysctl net.ipv4.tcp_mem",
                "ss -tmn | grep -B1 skmem | head -40   # which sockets hold the buffers",
                "nstat -az TcpExtTCPAbortOnMemory TcpExtTCPMemoryPressures   # still rising?",
                "dmesg | grep -iE 'consider tuning tcp_mem|too many orphaned'   # which limit",
            ),
            unchecked=unchecked,
        )
    )
    return kept


RULE = Rule(
    name="kernel_limits",
    summary="orphans, TCP memory and the conntrack table against their host-wide limits",
    codes=(
        Code(
            ORPHANS,
            "orphaned sockets near or over tcp_max_orphans (or logged over it), past which they "
            "are reset",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            TCP_MEMORY,
            "TCP's memory is past tcp_mem's pressure or hard limit, or ran out since boot or in "
            "the log",
            (Severity.INFO, Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            CONNTRACK,
            "the connection-tracking table is near or at nf_conntrack_max, or logged full: new "
            "flows dropped",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            MEMORY_ABORTS_RISING,
            "connections were aborted for lack of TCP memory during the window",
            (Severity.CRITICAL,),
            from_series=True,
        ),
    ),
    check=check,
    step=over_series,
)
