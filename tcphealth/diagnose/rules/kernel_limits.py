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
host stands and whether it has happened, a series whether it is happening. Connections aborted
for lack of memory during a series (TCPAbortOnMemory rising) are a finding of their own, whatever
the memory reads at the moments sampled: the pressure comes and goes between samples, the aborts
stay counted.
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.wording import level, number, percent, plural
from tcphealth.model import Blame, Evidence, Finding, Severity, Subject, SubjectKind

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
        _tcp_memory(index),
        _conntrack(index, thresholds),
    )
    return [finding for finding in found if finding is not None]


def _orphans(index: SnapshotIndex, thresholds: Thresholds) -> Finding | None:
    orphans = index.snapshot.counters.get("sockstat.TCP.orphan")
    limit = index.snapshot.sysctls.tcp_max_orphans
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


def _tcp_memory(index: SnapshotIndex) -> Finding | None:
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
            "orphaned sockets near or over tcp_max_orphans, past which the kernel resets them",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            TCP_MEMORY,
            "TCP's memory is past tcp_mem's pressure or hard limit, or ran out since boot",
            (Severity.INFO, Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            CONNTRACK,
            "the connection-tracking table is near or at nf_conntrack_max: new flows dropped",
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
