"""The diagnosis of a snapshot that covers several network namespaces: each namespace on its own.

Sysctls and kernel counters belong to a namespace (somaxconn, the port range, ListenOverflows
...), and so does every socket: a listener in one namespace says nothing about a connection in
another. So the snapshot is split per namespace, each part is diagnosed with its own sysctls
and counters, and each finding is placed: it names its namespace, its container and pod, says
"In pod X" where it is not the host's, and its next steps carry the way in (``nsenter
--net=/proc/PID/ns/net ss ...`` or ``ip netns exec NAME ss ...``), so that a command run as
printed looks where the finding was made. The parts' reports are then joined into one.

Between the snapshot and the report: imports the diagnosis and the report, never a renderer.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tcphealth.filters import notes_for_selection
from tcphealth.model import (
    Container,
    Finding,
    NetNamespace,
    NetnsKind,
    Process,
    Snapshot,
    Socket,
    TcpState,
)
from tcphealth.report import (
    STATE_ORDER,
    OwnerSummary,
    Report,
    SocketGroup,
    build_report,
    process_sort_key,
    sort_findings,
)

if TYPE_CHECKING:
    from tcphealth.series_facts import SeriesFacts  # only named here: a series loads it

# Next steps whose first word runs inside a network namespace: these get the way in. Every
# other step (prose, /proc/PID/... paths, which are the same from everywhere) stays as it is.
_IN_NAMESPACE = re.compile(
    r"^(?:ss|nstat|sysctl|ip|netstat|conntrack|tcpdump|lsof -i)\b|^cat /proc/(?:net|sys/net)/"
)


def split(snapshot: Snapshot) -> list[tuple[NetNamespace, Snapshot]]:
    """One snapshot per namespace of ``snapshot.namespaces``, in that order, with that
    namespace's sockets, sysctls and counters and the processes holding its sockets (a process
    with no socket goes with the namespace it lives in). Sockets of no known namespace go with
    the first."""
    namespaces = snapshot.namespaces
    first = namespaces[0].inode
    known = {namespace.inode for namespace in namespaces}
    sockets: dict[int, list[Socket]] = {inode: [] for inode in known}
    for sock in snapshot.sockets:
        inode = sock.netns if sock.netns in known else first
        sockets[inode].append(sock)
    holders: dict[int, set[int]] = {inode: set() for inode in known}
    for inode, members in sockets.items():
        for pids in {sock.pids for sock in members}:
            holders[inode].update(pids)
    holding = set().union(*holders.values()) if holders else set()
    parts: list[tuple[NetNamespace, Snapshot]] = []
    for namespace in namespaces:
        inode = namespace.inode
        processes = tuple(
            process
            for process in snapshot.processes
            if process.pid in holders[inode]
            or (
                process.pid not in holding
                and (process.netns == inode or (process.netns not in known and inode == first))
            )
        )
        parts.append(
            (
                namespace,
                replace(
                    snapshot,
                    sockets=tuple(sockets[inode]),
                    processes=processes,
                    sysctls=namespace.sysctls,
                    counters=namespace.counters,
                    namespaces=(namespace,),
                    notes=(),
                ),
            )
        )
    return parts


def way_in(namespace: NetNamespace, pid: int | None = None) -> str | None:
    """The words that put a command into ``namespace``; None for the host's.

    >>> way_in(NetNamespace(1, "lab", NetnsKind.NAMED, "/run/netns/lab", "lab"))
    'ip netns exec lab'
    """
    if namespace.kind is NetnsKind.HOST:
        return None
    if namespace.ip_name:
        return f"ip netns exec {shlex.quote(namespace.ip_name)}"
    if pid is not None:
        return f"nsenter --net=/proc/{pid}/ns/net"
    if namespace.enter:
        return f"nsenter --net={shlex.quote(namespace.enter)}"
    return None


def where_text(namespace: NetNamespace) -> str:
    """How a sentence names the namespace: ``pod default/web``, ``network namespace lab``."""
    if namespace.kind is NetnsKind.POD and namespace.container is not None:
        return f"pod {namespace.container.pod or namespace.container.pod_uid}"
    if namespace.kind is NetnsKind.CONTAINER and namespace.container is not None:
        return f"container {namespace.container.label}"
    return f"network namespace {namespace.label}"


def _runtime_step(container: Container | None, command: str) -> str | None:
    """The same namespace reached through the container runtime: no kubectl, no network."""
    if container is None or container.id is None:
        return None
    if container.runtime in ("containerd", "cri-o"):
        pid = (
            f"$(crictl inspect --output go-template --template '{{{{.info.pid}}}}' {container.id})"
        )
    elif container.runtime == "docker":
        pid = f"$(docker inspect -f '{{{{.State.Pid}}}}' {container.id})"
    elif container.runtime == "podman":
        pid = f"$(podman inspect -f '{{{{.State.Pid}}}}' {container.id})"
    else:
        return None
    return f"nsenter -t {pid} -n {command}   # the same, through the runtime"


def place(finding: Finding, namespace: NetNamespace, by_pid: dict[int, Process]) -> Finding:
    """``finding`` as made in ``namespace``: named, its steps run there."""
    pid = finding.subject.pid
    process = by_pid.get(pid) if pid is not None else None
    container = process.container if process is not None else None
    if container is None:
        container = namespace.container
    inside = pid if process is not None and process.netns == namespace.inode else None
    prefix = way_in(namespace, inside if inside is not None else namespace.pid)
    steps = list(finding.next_steps)
    if prefix is not None:
        first_command: str | None = None
        for number, step in enumerate(steps):
            if _IN_NAMESPACE.match(step):
                first_command = first_command or step
                steps[number] = f"{prefix} {step}"
        if first_command is not None:
            through = _runtime_step(container, first_command.split("   #")[0])
            if through is not None:
                steps.append(through)
    summary = finding.summary
    evidence = finding.evidence
    if namespace.kind is not NetnsKind.HOST:
        summary = f"In {where_text(namespace)}: {summary}"
        # Kernel counters are per namespace: one read in a pod counts that pod's drops.
        there = f"in {where_text(namespace)}"
        evidence = tuple(
            replace(item, detail=item.detail.replace("host-wide", there))
            if item.detail and "host-wide" in item.detail
            else item
            for item in evidence
        )
    elif process is not None and process.host_network and container is not None:
        summary = f"In pod {container.pod or container.pod_uid} (hostNetwork): {summary}"
    label = container.label if container is not None and (container.id or container.name) else None
    return replace(
        finding,
        summary=summary,
        evidence=evidence,
        next_steps=tuple(steps),
        netns=namespace.label,
        container=label,
        pod=(container.pod or container.pod_uid) if container is not None else None,
    )


Diagnosis = Callable[[Snapshot], list[Finding]]
SeriesDiagnosis = Callable[[Sequence[Snapshot]], "tuple[list[Finding], SeriesFacts]"]


def analyse(
    snapshot: Snapshot,
    diagnosis: Diagnosis,
    filters: tuple[str, ...] = (),
    *,
    grouped: bool = True,
) -> Report:
    """Diagnose every namespace of ``snapshot`` with ``diagnosis`` (the rules, with the
    thresholds and filters bound) and join the reports (``grouped``: see build_report)."""
    by_pid = {process.pid: process for process in snapshot.processes}
    if len(snapshot.namespaces) == 1:
        namespace = snapshot.namespaces[0]
        findings = [place(finding, namespace, by_pid) for finding in diagnosis(snapshot)]
        return replace(
            build_report(snapshot, findings, filters=filters, grouped=grouped),
            namespaces=snapshot.namespaces,
        )
    reports = []
    for namespace, part in split(snapshot):
        findings = [place(finding, namespace, by_pid) for finding in diagnosis(part)]
        reports.append((namespace, build_report(part, findings, filters=filters, grouped=grouped)))
    return join(snapshot, reports, filters)


def analyse_series(
    series: Sequence[Snapshot],
    diagnosis: SeriesDiagnosis,
    filters: tuple[str, ...] = (),
    *,
    grouped: bool = True,
) -> Report:
    """Like :func:`analyse` for several samples (oldest first): each namespace of the latest
    sample diagnosed over its own part of every sample. The series facts shown are the host's:
    every namespace's counts, counter rises, growth and ages together (series_facts.combine)."""
    from tcphealth.series_facts import combine  # only a series needs it

    latest = series[-1]
    by_pid = {process.pid: process for process in latest.processes}
    parts_of = [
        dict((namespace.inode, part) for namespace, part in split(sample))
        if sample.namespaces
        else {}
        for sample in series
    ]
    reports = []
    every_facts: list[SeriesFacts] = []
    for namespace, part in split(latest):
        samples = [parts.get(namespace.inode) for parts in parts_of[:-1]]
        sub = [sample for sample in samples if sample is not None] + [part]
        found, facts = diagnosis(sub)
        every_facts.append(facts)
        findings = [place(finding, namespace, by_pid) for finding in found]
        reports.append(
            (
                namespace,
                build_report(part, findings, filters=filters, series=facts, grouped=grouped),
            )
        )
    facts_of_host = combine(every_facts) if every_facts else None
    if len(reports) == 1:
        namespace, report = reports[0]
        whole = build_report(
            latest, report.findings, filters=filters, series=facts_of_host, grouped=grouped
        )
        return replace(whole, namespaces=latest.namespaces)
    return join(latest, reports, filters, series=facts_of_host)


def join(
    snapshot: Snapshot,
    reports: Sequence[tuple[NetNamespace, Report]],
    filters: tuple[str, ...],
    series: SeriesFacts | None = None,
) -> Report:
    """One report of the namespaces' reports: findings and processes of all, each group of
    sockets no process holds kept apart per namespace (tagged with it)."""
    states: Counter[TcpState] = Counter()
    unowned_states: Counter[TcpState] = Counter()
    findings: list[Finding] = []
    processes: list[OwnerSummary] = []
    unowned_groups: list[SocketGroup] = []
    unowned_count = 0
    truncated = 0
    for namespace, report in reports:
        states.update(report.states)
        findings.extend(report.findings)
        processes.extend(
            replace(
                summary,
                groups=tuple(replace(group, netns=namespace.inode) for group in summary.groups),
            )
            for summary in report.processes
        )
        unowned_states.update(report.unowned.states)
        unowned_count += report.unowned.socket_count
        unowned_groups.extend(
            replace(group, netns=namespace.inode) for group in report.unowned.groups
        )
        truncated += report.truncated_sockets
    processes.sort(key=process_sort_key)
    return Report(
        host=snapshot.host,
        attribution=snapshot.attribution,
        socket_count=len(snapshot.sockets),
        states={state: states[state] for state in STATE_ORDER if states.get(state)},
        findings=sort_findings(findings),
        processes=tuple(processes),
        unowned=OwnerSummary(
            process=None,
            socket_count=unowned_count,
            states={
                state: unowned_states[state] for state in STATE_ORDER if unowned_states.get(state)
            },
            groups=tuple(unowned_groups),
        ),
        notes=notes_for_selection(snapshot, filters),
        filters=filters,
        reported_states=dict(snapshot.state_counts),
        truncated_sockets=truncated,
        skipped_lines=snapshot.skipped_lines,
        sockets=snapshot.sockets,
        process_by_pid={process.pid: process for process in snapshot.processes},
        namespaces=snapshot.namespaces,
        series=series,
    )
