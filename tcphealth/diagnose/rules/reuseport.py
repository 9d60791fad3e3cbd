"""Several listeners on one address and port (SO_REUSEPORT), whose accept queues are uneven.

With SO_REUSEPORT each worker has its own listener, and the kernel spreads new connections
over the group by a hash of their addresses and ports -- not by which worker is free. A worker
that stalls keeps receiving its share, which waits in its queue (and overflows it) while the
others sit idle: some clients see long delays or timeouts though the service as a whole has
room. (Without SO_REUSEPORT the opposite happens -- one worker woken first takes most of the
load -- but that shows in no queue.)
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import assess_accept_queue, listener_owner, listener_subject
from tcphealth.diagnose.wording import number, percent, who
from tcphealth.model import Blame, Endpoint, Evidence, Finding, Severity, Socket, TcpState

REUSEPORT_UNEVEN = "reuseport-uneven"


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    for listeners in index.listeners_by_port.values():
        if len(listeners) < 2:
            continue
        groups: dict[Endpoint, list[Socket]] = {}
        for listener in listeners:
            groups.setdefault(listener.local, []).append(listener)
        for group in groups.values():
            if len(group) >= 2:
                finding = _uneven(index, group, thresholds)
                if finding is not None:
                    findings.append(finding)
    return findings


def _uneven(index: SnapshotIndex, group: list[Socket], thresholds: Thresholds) -> Finding | None:
    sysctls = index.snapshot.sysctls
    queues = [(listener, assess_accept_queue(listener, sysctls)) for listener in group]
    if any(queue.queued is None for _, queue in queues):
        return None
    # Keeping up: under half the fill that counts as falling behind (an accepting worker's
    # queue is seldom exactly empty at the moment of a look).
    room = thresholds.accept_queue_warning_ratio / 2
    idle = [
        listener
        for listener, queue in queues
        if queue.queued == 0 or (queue.fill is not None and queue.fill < room)
    ]
    behind = [
        (listener, queue)
        for listener, queue in queues
        if queue.fill is not None
        and not queue.fill_is_lower_bound
        and queue.fill >= thresholds.accept_queue_warning_ratio
    ]
    if not idle or not behind:
        return None  # all busy (the service is short of workers) or all keeping up
    listener, queue = max(behind, key=lambda pair: pair[1].fill or 0.0)
    endpoint = str(listener.local)
    pids = listener_owner(listener)
    owner = who(index, pids) if pids else "its owner"
    waiting = sum(queue.queued or 0 for _, queue in behind)
    evidence = [
        Evidence("listeners", len(group), "sockets listening on this address and port"),
        Evidence("listeners_behind", len(behind), "accept queue at or near its backlog"),
        Evidence("listeners_keeping_up", len(idle), "accept queue empty or nearly"),
    ]
    for member, member_queue in queues:
        member_pids = listener_owner(member)
        label = f"pid {member_pids[0]}" if member_pids else f"inode {member.inode}"
        evidence.append(
            Evidence(
                "accept_queue",
                member_queue.queued,
                f"{label}: of a backlog of {member.listen_backlog}"
                if member.listen_backlog is not None
                else f"{label}: backlog not reported",
            )
        )
    return Finding(
        code=REUSEPORT_UNEVEN,
        severity=Severity.WARNING,
        state=TcpState.LISTEN,
        blame=Blame.LOCAL_APPLICATION,
        subject=listener_subject(index, listener),
        count=waiting,
        summary=(
            f"{number(len(group))} listeners share {endpoint} (SO_REUSEPORT) but not the load: "
            f"{owner}'s queue holds {number(queue.queued or 0)} "
            f"({percent(queue.fill or 0.0)} of its backlog) while {number(len(idle))} "
            "others keep theirs (nearly) empty. The kernel keeps sending that worker its share, so "
            "those clients wait though the service has room."
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -ltnpe 'sport = :{listener.local.port}'   # Recv-Q of each listener and its pid",
            f"grep State /proc/{pids[0]}/status   # T = stopped" if pids else "ss -ltnpe",
            "Find what blocks the slow worker (a thread dump, strace -p). An SO_REUSEPORT "
            "group cannot move its queue to the idle ones.",
        ),
    )


RULE = Rule(
    name="reuseport",
    summary="SO_REUSEPORT listeners of one port whose accept queues are uneven",
    codes=(
        Code(
            REUSEPORT_UNEVEN,
            "listeners sharing a port (SO_REUSEPORT) are uneven: one's queue fills, others keep up",
            (Severity.WARNING,),
        ),
    ),
    check=check,
)
