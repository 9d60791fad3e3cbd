"""Processes close to their file-descriptor limit.

Every socket a process holds is a descriptor. At the soft limit (RLIMIT_NOFILE) accept(),
connect() and open() fail with EMFILE, and the symptoms show up as TCP trouble: listeners stop
accepting, clients cannot connect, and CLOSE_WAIT or SYN_SENT pile up.

Where the count of open descriptors is not known but a listing showed one by number (lsof's FD
column in a paste), that number is a floor: the kernel hands out the lowest free number, so
when descriptor N was opened, all N below it were in use. The finding says it is a floor and
names the command that gives the count.
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.wording import level, number, percent, process_subject, who
from tcphealth.model import Blame, Evidence, Finding, Process, Severity

FD_LIMIT_NEAR = "fd-limit-near"


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    for process in index.processes.values():
        finding = _check_process(index, process, thresholds)
        if finding is not None:
            findings.append(finding)
    return findings


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
        next_steps=(
            f"ls /proc/{pid}/fd | wc -l",
            f"ls -l /proc/{pid}/fd | grep -c socket",
            f"cat /proc/{pid}/limits   # Max open files",
            f"If the load is legitimate, {raise_text}. If the count only grows, look for a "
            "leak (CLOSE_WAIT findings for this pid).",
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


RULE = Rule(
    name="descriptors",
    summary="processes near their file-descriptor limit",
    codes=(
        Code(
            FD_LIMIT_NEAR,
            "a process holding sockets has used most of its open-file limit",
            (Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
)
