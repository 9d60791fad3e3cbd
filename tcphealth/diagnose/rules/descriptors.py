"""Processes close to their file-descriptor limit.

Every socket a process holds is a descriptor. At the soft limit (RLIMIT_NOFILE) accept(),
connect() and open() fail with EMFILE, and the symptoms show up as TCP trouble: listeners stop
accepting, clients cannot connect, and CLOSE_WAIT or SYN_SENT pile up.

Where the count of open descriptors is not known but a listing showed one by number (lsof's FD
column in a paste), that number is a floor: the kernel hands out the lowest free number, so
when descriptor N was opened, all N below it were in use. The finding says it is a floor and
names the command that gives the count.

A paste may say it outright: the program's own error line, ``accept4: too many open files``
(EMFILE). The limit was then reached -- the strongest fact there is about it, stronger than any
count -- at the time of the line, which the paste seldom shows. That is critical whatever the
counts say. It is the process's if the paste is about one process (the only one it names);
otherwise the line does not say whose, and the finding says so.
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    Elsewhere,
    descriptors_elsewhere,
    error_evidence,
    error_line,
    platform_steps,
)
from tcphealth.diagnose.wording import level, number, percent, process_subject, who
from tcphealth.model import (
    Blame,
    ErrorKind,
    ErrorLine,
    Evidence,
    Finding,
    Process,
    Severity,
    Subject,
    SubjectKind,
)

FD_LIMIT_NEAR = "fd-limit-near"
FD_EXHAUSTED_LOGGED = "fd-exhausted-logged"


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    logged = error_line(index, ErrorKind.DESCRIPTORS)
    # The paste is about one process when it names no other: the error line is then its.
    named = list(index.processes.values())
    only = named[0] if logged is not None and len(named) == 1 else None
    if logged is not None:
        findings.append(_logged(index, logged, only))
    for process in index.processes.values():
        if process is only:
            continue  # the error line says more than its counts: one finding, that one
        finding = _check_process(index, process, thresholds)
        if finding is not None:
            findings.append(finding)
    return findings


def _logged(index: SnapshotIndex, line: ErrorLine, process: Process | None) -> Finding:
    evidence = [
        error_evidence(
            line, "a call that needed a new descriptor failed with EMFILE: the limit was reached"
        )
    ]
    unchecked = [
        "whether the limit is still reached: the line says it was, when it was printed; "
        "the descriptor count against the limit now settles it"
    ]
    if process is None:
        holder = "a process on this host (the line does not say which)"
        subject = Subject(kind=SubjectKind.HOST)
        sockets = 0
        unchecked.insert(
            0,
            "which process ran out: the paste names none or several, and the line does not "
            "say (count each one's descriptors against its limit to know)",
        )
        steps: tuple[str, ...] = (
            'for p in /proc/[0-9]*; do echo "$(ls $p/fd 2>/dev/null | wc -l) $p"; done | '
            "sort -rn | head   # descriptors per process",
        )
        elsewhere = Elsewhere(
            (
                "lsof -n | awk 'NR > 1 {print $2, $1}' | sort | uniq -c | sort -rn | head   "
                "# descriptors per process (macOS, and BSD with the lsof port)",
            ),
            (
                "Get-Process | Sort-Object HandleCount -Descending | Select-Object -First 10 Id, "
                "ProcessName, HandleCount",
            ),
        )
    else:
        pid = process.pid
        unchecked.insert(
            0,
            f"that the line is pid {pid}'s: the paste names no other process, and the line "
            "does not say whose it is",
        )
        holder = who(index, (pid,))
        subject = process_subject(index, (pid,))
        sockets = index.sockets_per_pid.get(pid, 0)
        if process.open_fds is not None:
            evidence.append(Evidence("open_fds", process.open_fds, "descriptors it has open"))
        if process.fd_soft_limit is not None:
            evidence.append(
                Evidence("fd_soft_limit", process.fd_soft_limit, "RLIMIT_NOFILE, the EMFILE line")
            )
        evidence.append(Evidence("sockets", sockets, "TCP sockets it holds in this paste"))
        steps = (
            f"ls /proc/{pid}/fd | wc -l",
            f"ls -l /proc/{pid}/fd | grep -c socket   # how many of them are sockets",
            f"cat /proc/{pid}/limits   # Max open files",
            f"ss -tanp | grep 'pid={pid},' | awk '{{print $1}}' | sort | uniq -c   # the "
            "states its sockets are in",
        )
        elsewhere = descriptors_elsewhere(pid)
    return Finding(
        code=FD_EXHAUSTED_LOGGED,
        severity=Severity.CRITICAL,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=sockets,
        summary=(
            f"The paste's own error line says {holder} ran out of file descriptors ('too many "
            "open files', EMFILE): at its open-file limit, accept(), socket() and open() fail, "
            "so new connections are refused or dropped until descriptors are freed."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                *steps,
                f"{_KEPT} If the load is legitimate, raise the limit (LimitNOFILE=, ulimit -n).",
            ),
            elsewhere=elsewhere.then(
                f"{_KEPT} If the load is legitimate, raise the process's open-file limit."
            ),
        ),
        unchecked=tuple(unchecked),
    )


def _check_process(
    index: SnapshotIndex, process: Process, thresholds: Thresholds
) -> Finding | None:
    used, limit = process.open_fds, process.fd_soft_limit
    # Not the count but a floor: descriptor N open means N+1 were in use when it was opened.
    floor = used is None and process.highest_fd is not None
    if used is None and process.highest_fd is not None:
        used = process.highest_fd + 1
    if used is None or limit is None or limit <= 0:
        return None  # unknown usage or limit: nothing to compare
    ratio = used / limit
    severity = level(ratio, thresholds.fd_warning_ratio, thresholds.fd_critical_ratio)
    if severity is None:
        return None
    pid = process.pid
    sockets = index.sockets_per_pid.get(pid, 0)
    holder = who(index, (pid,))
    hard = process.fd_hard_limit
    raise_text = (
        f"raise the soft limit (LimitNOFILE=, ulimit -n) up to the hard limit of {number(hard)}"
        if hard is not None and hard > limit
        else "raise the limit (LimitNOFILE=, ulimit -n)"
    )
    if floor:
        evidence = [
            Evidence(
                "highest_fd",
                used - 1,
                f"the highest descriptor number the listing shows open: when it was opened "
                f"every lower one was in use, {number(used)} in all, {percent(ratio)} of the "
                "soft limit",
            )
        ]
        held_text = f"had at least {number(used)} of its {number(limit)} file descriptors open"
    else:
        evidence = [Evidence("open_fds", used, f"{percent(ratio)} of the soft limit")]
        held_text = f"has {number(used)} of its {number(limit)} file descriptors open"
    evidence.append(Evidence("fd_soft_limit", limit, "RLIMIT_NOFILE, the EMFILE threshold"))
    if hard is not None:
        evidence.append(Evidence("fd_hard_limit", hard, "how far the soft limit may be raised"))
    evidence.append(Evidence("sockets", sockets, "TCP sockets it holds in this snapshot"))
    return Finding(
        code=FD_LIMIT_NEAR,
        severity=severity,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, (pid,)),
        count=sockets,
        summary=(
            f"{holder} {held_text} ({percent(ratio)}), {number(sockets)} of them TCP sockets: "
            "new connections and files fail with 'too many open files' (EMFILE) once the rest "
            "are gone."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"ls /proc/{pid}/fd | wc -l",
                f"ls -l /proc/{pid}/fd | grep -c socket",
                f"cat /proc/{pid}/limits   # Max open files",
                f"If the load is legitimate, {raise_text}. {_LEAK}",
            ),
            # raise_text names systemd's way; elsewhere the shell's, where it applies.
            elsewhere=descriptors_elsewhere(pid).then(
                f"If the load is legitimate, raise the process's open-file limit (ulimit -n "
                f"where it starts). {_LEAK}"
            ),
        ),
        unchecked=(
            (
                "how many descriptors are open now: the source shows one by its number, not "
                f"the count (ls /proc/{pid}/fd | wc -l gives it)",
            )
            if floor
            else ()
        ),
    )


_KEPT = (
    "If the count only grows, find what keeps them: sockets in CLOSE_WAIT or CLOSE are "
    "descriptors of finished connections never closed."
)
_LEAK = "If the count only grows, look for a leak (CLOSE_WAIT findings for this pid)."

RULE = Rule(
    name="descriptors",
    summary="processes near their file-descriptor limit, or past it by the paste's own error line",
    codes=(
        Code(
            FD_LIMIT_NEAR,
            "a process holding sockets has used most of its open-file limit",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            FD_EXHAUSTED_LOGGED,
            "the paste's own error line: a process ran out of file descriptors (EMFILE)",
            (Severity.CRITICAL,),
        ),
    ),
    check=check,
)
