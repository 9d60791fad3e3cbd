"""TCP sockets in CLOSE that a process still holds: connections over, descriptors kept.

CLOSE (BSD and Windows say CLOSED, ``ss`` says UNCONN) is where a TCP socket starts, before
connect() or listen(), and where it goes back to when its connection is reset, when a
connect() is refused or times out, or when a connection ends while the descriptor is still
open. Nothing ends it but close() (or the process's exit): no timer, no sysctl. So one or two
are a socket between socket() and connect(); hundreds held by one process are connections it
finished with and never closed -- a descriptor leak, the local application's doing, and each
one counts against its open-file limit until accept() and connect() fail with EMFILE.

What the tables list of them differs by system, and decides what a count can show:

* BSD and macOS keep every socket's control block in the list ``netstat -an`` walks, so a
  leaked socket shows there as CLOSED (zoulasc/blocklist#37: 62,254 of them).
* Linux lists only the sockets in its lookup tables. /proc/net/tcp never shows CLOSE. Netlink
  (what ``ss`` and tcphealth use) shows a CLOSE socket only while it still owns a port --
  bound by bind() to a port of its choosing, or bound and never connected -- and only when
  the dump asks for bound-only sockets (kernels 6.8 and later; ss 6.1 does not ask). A
  connect() that picked its port itself gives the port back when it fails or is reset, and
  that socket is listed nowhere: only the process's descriptor count shows it.

So the rows and counts judged here are a floor of the pile, and a finding says so on Linux.
Rows with a holder are judged per holder; rows without one, and a paste's own count of every
CLOSE(D) on the host, warn at most and say which fact (the holder) would settle it -- unless
the paste's own error line says a process ran out of descriptors (EMFILE): the harm such a
pile does is then shown, and a pile at the critical level is critical, whoever holds it.
"""

from __future__ import annotations

from collections import Counter

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex, owned_by_fd
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    count_platform,
    error_evidence,
    error_line,
    paste_count_evidence,
    platform_steps,
    widest_counts,
)
from tcphealth.diagnose.wording import level, number, percent, pids_key, process_subject, who
from tcphealth.model import (
    Blame,
    ErrorKind,
    Evidence,
    Finding,
    ReportedCount,
    Severity,
    Subject,
    SubjectKind,
    TcpState,
)

CLOSE_HELD = "close-held"
CLOSE_COUNTED = "close-counted"

_FIX = (
    "Close the socket on every path where a connection ends, is reset or fails to connect: "
    "until close(), the descriptor stays open and the socket stays in CLOSE."
)
_LINUX_FLOOR = (
    "how many more it holds: Linux lists a CLOSE socket only while it keeps a port it bound "
    "itself; one whose connect() picked the port is in no table, so the descriptor count is "
    "the measure"
)


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    listed = index.sockets(TcpState.CLOSE)
    held: Counter[tuple[int, ...]] = Counter()
    unowned = 0
    for sock in listed:
        if owned_by_fd(sock):
            held[pids_key(sock.pids)] += 1
        else:
            unowned += 1
    findings = [
        finding
        for pids, count in held.items()
        if (finding := _held(index, pids, count, thresholds)) is not None
    ]
    if unowned:
        found = _unowned(index, unowned, thresholds)
        if found is not None:
            findings.append(found)
    counted = widest_counts(index.snapshot.reported).get(TcpState.CLOSE)
    if counted is not None and counted.sockets > len(listed):
        found = _counted(index, counted, thresholds)
        if found is not None:
            findings.append(found)
    return findings


def _linux(index: SnapshotIndex) -> bool:
    return index.snapshot.host.platform in (None, "linux")


def _limit_severity(
    index: SnapshotIndex, pids: tuple[int, ...], count: int, thresholds: Thresholds
) -> tuple[Severity | None, list[Evidence]]:
    """CRITICAL where these sockets alone take fd_warning_ratio of the holder's descriptor
    limit (the lowest of its processes' known limits), with the limit as evidence."""
    limits = [
        (process.fd_soft_limit, process.pid)
        for pid in pids
        if (process := index.processes.get(pid)) is not None
        and process.fd_soft_limit is not None
        and process.fd_soft_limit > 0
    ]
    if not limits:
        return None, []
    limit, pid = min(limits)
    ratio = count / limit
    evidence = [
        Evidence(
            "fd_soft_limit",
            limit,
            f"pid {pid}'s RLIMIT_NOFILE: these sockets alone are {percent(ratio)} of it",
        )
    ]
    return (Severity.CRITICAL if ratio >= thresholds.fd_warning_ratio else None), evidence


def _held(
    index: SnapshotIndex, pids: tuple[int, ...], count: int, thresholds: Thresholds
) -> Finding | None:
    by_count = level(count, thresholds.close_held_warning, thresholds.close_held_critical)
    by_limit, limit_evidence = _limit_severity(index, pids, count, thresholds)
    if by_count is None:
        return None  # a few sockets between socket() and connect(), or below the bar
    severity = by_limit or by_count
    holder = who(index, pids)
    evidence = [
        Evidence("close_held", count, "sockets in CLOSE this holder keeps a descriptor to"),
        *limit_evidence,
    ]
    for pid in pids:
        process = index.processes.get(pid)
        if process is not None and process.open_fds is not None:
            evidence.append(
                Evidence("open_fds", process.open_fds, f"descriptors pid {pid} has open")
            )
    return Finding(
        code=CLOSE_HELD,
        severity=severity,
        state=TcpState.CLOSE,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids),
        count=count,
        summary=(
            f"{holder} holds {number(count)} TCP sockets in CLOSE: connections that are over "
            "(reset, refused, timed out or ended) or never began, whose descriptors it never "
            "closed -- a descriptor leak in the application, not a network problem"
            + (
                "; they alone use most of its open-file limit, so accept() and connect() will "
                "fail with EMFILE"
                if by_limit is not None
                else ""
            )
            + "."
        ),
        evidence=tuple(evidence),
        next_steps=_steps(index, pids),
        unchecked=(_LINUX_FLOOR,) if _linux(index) else (),
    )


_RAN_OUT = "a process ran out of descriptors, which each of these sockets holds one of"
_RAN_OUT_SUMMARY = "; the paste's own error line says a process ran out of descriptors"


def _ran_out(index: SnapshotIndex, severity: Severity) -> Evidence | None:
    """The EMFILE line, as evidence, where the pile is at the critical level: the harm it
    does is then shown, whoever holds it."""
    line = error_line(index, ErrorKind.DESCRIPTORS)
    if line is None or severity is not Severity.CRITICAL:
        return None
    return error_evidence(line, _RAN_OUT)


def _unowned(index: SnapshotIndex, count: int, thresholds: Thresholds) -> Finding | None:
    by_count = level(count, thresholds.close_held_warning, thresholds.close_held_critical)
    if by_count is None:
        return None
    ran_out = _ran_out(index, by_count)
    return Finding(
        code=CLOSE_HELD,
        # Per-process thresholds cannot be applied to sockets whose holders are not known --
        # unless a process is shown to have run out of descriptors.
        severity=Severity.CRITICAL if ran_out is not None else Severity.WARNING,
        state=TcpState.CLOSE,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.HOST),
        count=count,
        summary=(
            f"{number(count)} TCP sockets in CLOSE whose holder the source does not say: each "
            "is a connection over, or never begun, whose descriptor something on this host "
            "keeps open -- a descriptor leak in an application"
            + (_RAN_OUT_SUMMARY if ran_out is not None else "")
            + "."
        ),
        evidence=(
            Evidence("close_listed", count, "sockets in CLOSE listed without a holder"),
            *((ran_out,) if ran_out is not None else ()),
        ),
        next_steps=_steps(index, ()),
        unchecked=(
            "which process holds them: the source does not say, and the critical level is for "
            "one process's pile (list them with their owners to know)",
            *((_LINUX_FLOOR,) if _linux(index) else ()),
        ),
    )


def _counted(index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds) -> Finding | None:
    severity = level(count.sockets, thresholds.close_held_warning, thresholds.close_held_critical)
    if severity is None:
        return None
    pids = count.pids
    one_holder = bool(pids) or count.selects is not None
    unchecked: list[str] = []
    ran_out = _ran_out(index, severity)
    if not one_holder:
        if severity is Severity.CRITICAL and ran_out is None:
            severity = Severity.WARNING
        unchecked.append(
            "which process holds them: the count covers every CLOSE(D) socket on the host, and "
            "the critical level is for one process's pile; count them per process to know"
        )
    if pids:
        holder = who(index, pids)
    elif count.selects is not None:
        holder = f"what `{count.selects}` selects"
    else:
        holder = "something on this host"
    unchecked.append(
        "the sockets themselves: the paste printed a count, not the rows, so their ports and "
        "peers are not known"
    )
    return Finding(
        code=CLOSE_COUNTED,
        severity=severity,
        state=TcpState.CLOSE,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, pids) if pids else Subject(kind=SubjectKind.HOST),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} TCP sockets in CLOSE(D): a socket stays "
            f"in that state after its connection is over only while a descriptor holds it, so "
            f"{holder} keeps the descriptors of connections it finished with -- a descriptor "
            "leak in the application, not a network problem"
            + (_RAN_OUT_SUMMARY if ran_out is not None else "")
            + "."
        ),
        evidence=(*paste_count_evidence(count), *((ran_out,) if ran_out is not None else ())),
        next_steps=_steps(index, pids, count_platform(index.snapshot, count)),
        unchecked=tuple(unchecked),
    )


def _steps(
    index: SnapshotIndex, pids: tuple[int, ...], platform: str | None = None
) -> tuple[str, ...]:
    platform = platform or index.snapshot.host.platform
    pid = pids[0] if pids else None
    linux = (
        (
            f"ls -l /proc/{pid}/fd | grep -c socket   # every socket it holds, listed or not",
            f"grep 'Max open files' /proc/{pid}/limits",
        )
        if pid is not None
        else (
            'for p in /proc/[0-9]*; do echo "$(ls $p/fd 2>/dev/null | wc -l) $p"; done | '
            "sort -rn | head   # descriptors per process",
        )
    ) + (
        "grep TCP /proc/net/sockstat   # alloc counts every TCP socket, inuse only those in "
        "the tables",
        _FIX,
    )
    bsd = (
        *((f"lsof -nP -p {pid} -a -iTCP | grep -c CLOSED   # macOS",) if pid is not None else ()),
        *((f"procstat -f {pid} | grep -c TCP   # FreeBSD",) if pid is not None else ()),
        "netstat -an -p tcp | grep -c CLOSED",
        "sockstat -46s -P tcp | grep CLOSED | awk '{print $2, $3}' | sort | uniq -c | sort -rn "
        "| head   # per process (FreeBSD)",
        "lsof -nP -iTCP -sTCP:CLOSED | awk 'NR > 1 {print $1, $2}' | sort | uniq -c | sort -rn "
        "| head   # per process (macOS)",
        _FIX,
    )
    windows = (
        "Get-NetTCPConnection -State Closed | Group-Object OwningProcess | "
        "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
        "netstat -ano | findstr CLOSED   # the last column is the pid",
        _FIX,
    )
    return platform_steps(platform, linux, bsd=bsd, windows=windows)


RULE = Rule(
    name="closed",
    summary="sockets in CLOSE still held by a process: descriptors of connections that are over",
    codes=(
        Code(
            CLOSE_HELD,
            "a process keeps many TCP sockets in CLOSE: connections over, descriptors leaked",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            CLOSE_COUNTED,
            "the paste's own count of CLOSE(D) sockets: descriptors of finished connections kept",
            (Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
)
