"""The JSON shape of a report's parts, shared by the JSON and NDJSON renderers.

Unknown values are ``null``, never ``0``. States use their canonical names (``CLOSE_WAIT``),
severities their labels (``CRITICAL``), endpoints ``"ip:port"`` with IPv6 in brackets
(``"[2001:db8::1]:443"``) and ``*`` for a port left out of a group.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tcphealth.model import TCP_STATES, CodeEntry, Container, Finding, Socket, TcpState
from tcphealth.render.text import utc_iso
from tcphealth.report import OwnerSummary, Report, SocketGroup, ThresholdsReport
from tcphealth.states import StateExplanation

if TYPE_CHECKING:
    from tcphealth.series_facts import SeriesFacts  # only named here: a series loads it

REPORT_FORMAT = "tcphealth.report"
# 2: network namespaces -- "namespaces", and netns / container / pod on findings, processes,
# groups and sockets; summary.namespaces and summary.containers.
REPORT_VERSION = 2

JSONObject = dict[str, Any]
_NOWHERE: tuple[str | None, str | None, str | None] = (None, None, None)


def host_record(report: Report) -> JSONObject:
    host = report.host
    return {
        "hostname": host.hostname,
        "kernel": host.kernel,
        "platform": host.platform,
        "source": host.source,
        # null where the input does not say when it was captured (a paste)
        "taken_at": utc_iso(host.taken_at) if host.taken_at_known else None,
        "taken_at_epoch": host.taken_at if host.taken_at_known else None,
        "privileged": host.privileged,
    }


def states_record(states: Mapping[TcpState, int]) -> dict[str, int]:
    """Every one of the eleven states (0 where none), then any odd state that occurred."""
    record = {state.value: states.get(state, 0) for state in TCP_STATES}
    record.update({state.value: count for state, count in states.items() if count})
    return record


def summary_record(report: Report) -> JSONObject:
    return {
        "sockets": report.socket_count,
        "states": states_record(report.states),
        "findings": {sev.label: count for sev, count in report.count_by_severity().items() if sev},
        "worst": report.worst_severity.label,
        # The verdict's "N sockets whose age decides", for a script to see the same fact.
        "age_decides": report.age_decides,
        "reported_states": dict(report.reported_states),
        "truncated_sockets": report.truncated_sockets,
        "skipped_lines": report.skipped_lines,
        "namespaces": len(report.namespaces),
        "containers": report.container_count,
    }


def attribution_record(report: Report) -> JSONObject:
    attribution = report.attribution
    return {
        "attempted": attribution.attempted,
        "complete": attribution.complete,
        "processes_scanned": attribution.processes_scanned,
        "processes_vanished": attribution.processes_vanished,
        "processes_forbidden": attribution.processes_forbidden,
        "sockets_unseen": attribution.sockets_unseen,
    }


def finding_record(finding: Finding) -> JSONObject:
    subject = finding.subject
    return {
        "code": finding.code,
        "severity": finding.severity.label,
        "state": finding.state.value if finding.state else None,
        "blame": finding.blame.value,
        "pid": subject.pid,
        "process": subject.process,
        "count": finding.count,
        "summary": finding.summary,
        "evidence": [
            {"name": item.name, "value": item.value, "detail": item.detail}
            for item in finding.evidence
        ],
        "next_steps": list(finding.next_steps),
        "subject": {
            "kind": subject.kind.value,
            "pid": subject.pid,
            "pids": list(subject.pids),
            "process": subject.process,
            "endpoint": subject.endpoint,
        },
        "unchecked": list(finding.unchecked),
        "netns": finding.netns,
        "container": finding.container,
        "pod": finding.pod,
        "outside_filter": list(finding.outside_filter),
    }


def container_record(container: Container | None) -> JSONObject | None:
    if container is None:
        return None
    return {
        "label": container.label,
        "runtime": container.runtime,
        "id": container.id,
        "name": container.name,
        "pod": container.pod,
        "pod_uid": container.pod_uid,
        "qos": container.qos,
    }


def namespace_records(report: Report) -> list[JSONObject]:
    """Every namespace read, with its sockets per state and the words that enter it."""
    from tcphealth.namespaced import way_in  # only a report of namespaces needs it

    counts: dict[int | None, Counter[TcpState]] = {}
    for sock in report.sockets:
        counts.setdefault(sock.netns, Counter())[sock.state] += 1
    first = report.namespaces[0].inode if report.namespaces else None
    records = []
    for namespace in report.namespaces:
        states = counts.get(namespace.inode, Counter())
        if namespace.inode == first:
            states = states + counts.get(None, Counter())
        records.append(
            {
                "label": namespace.label,
                "inode": namespace.inode,
                "kind": namespace.kind.value,
                "enter": namespace.enter,
                "ip_name": namespace.ip_name,
                "names": list(namespace.names),
                "way_in": way_in(namespace),
                "pid": namespace.pid,
                "processes": namespace.process_count,
                "container": container_record(namespace.container),
                "pod": namespace.pod,
                "source": namespace.source,
                "sockets": sum(states.values()),
                "states": states_record(states),
            }
        )
    return records


def group_record(group: SocketGroup, report: Report | None = None) -> JSONObject:
    namespace = report.namespace(group.netns) if report is not None else None
    return {
        "state": group.state.value,
        "local": str(group.local),
        "remote": group.remote_text,
        "peers": group.peers,
        "count": group.count,
        "recv_queue_max": group.recv_queue_max,
        "send_queue_max": group.send_queue_max,
        "listen_backlog": group.listen_backlog,
        "oldest_seconds": _seconds(group.oldest_seconds),
        "netns": namespace.label if namespace is not None else None,
        "unaccepted": group.unaccepted,
    }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def process_record(summary: OwnerSummary, report: Report | None = None) -> JSONObject:
    process = summary.process
    assert process is not None
    worst = summary.worst
    namespace = report.namespace(process.netns) if report is not None else None
    container = process.container
    return {
        "pid": process.pid,
        "name": process.name,
        "user": process.user,
        "uid": process.uid,
        "cmdline": list(process.cmdline) if process.cmdline is not None else None,
        "open_fds": process.open_fds,
        "fd_soft_limit": process.fd_soft_limit,
        "fd_hard_limit": process.fd_hard_limit,
        "sockets": summary.socket_count,
        "states": {state.value: count for state, count in summary.states.items()},
        "worst": {"code": worst.code, "severity": worst.severity.label} if worst else None,
        "findings": [finding.code for finding in summary.findings],
        "groups": [group_record(group, report) for group in summary.groups],
        "netns": namespace.label if namespace is not None else None,
        "container": container_record(container),
        "pod": (container.pod or container.pod_uid) if container is not None else None,
        "unit": process.unit,
        "host_network": process.host_network,
    }


def unowned_record(summary: OwnerSummary, report: Report | None = None) -> JSONObject:
    return {
        "sockets": summary.socket_count,
        "states": {state.value: count for state, count in summary.states.items()},
        "groups": [group_record(group, report) for group in summary.groups],
    }


def socket_record(report: Report, sock: Socket) -> JSONObject:
    info = sock.tcp_info
    age = report.age_of(sock)
    netns, container, pod = report.place(sock.netns, sock.pids) if report.namespaces else _NOWHERE
    return {
        "state": sock.state.value,
        "family": sock.family.value,
        "local": str(sock.local),
        "remote": str(sock.remote),
        "pids": list(sock.pids),
        "process": report.process_names(sock.pids),
        "owner": sock.owner_source.value,
        "send_queue": sock.send_queue,
        "recv_queue": sock.recv_queue,
        "listen_backlog": sock.listen_backlog,
        "timer": sock.timer.value if sock.timer else None,
        "timer_seconds": sock.timer_seconds,
        "retransmits": sock.retransmits,
        "probes": sock.probes,
        "uid": sock.uid,
        "inode": sock.inode,
        "raw_state": sock.raw_state,
        "truncated": sock.truncated,
        "tcp_info": (dataclasses.asdict(info) if info else None),
        # sk_shutdown bits (1 receive side shut, 2 send side) and skmem's drop count: netlink
        # gives them, the other sources do not (null).
        "shutdown": sock.shutdown,
        "drops": sock.drops,
        # Followed over samples (--samples, watch): since when it is in this state, and for
        # how long; age_at_least_seconds adds tcp_info's floor and is there for one sample too.
        "first_seen": None if age is None else round(age.first_seen, 3),
        "age_seconds": None if age is None else round(age.observed_seconds, 1),
        "samples_seen": None if age is None else age.samples,
        "age_at_least_seconds": _seconds(report.age_at_least(sock)),
        "netns": netns,
        "netns_inode": sock.netns,
        "container": container,
        "pod": pod,
    }


def series_record(series: SeriesFacts | None) -> JSONObject | None:
    """What the samples showed besides findings; None for a report of one snapshot."""
    if series is None:
        return None
    return {
        "samples": series.samples,
        "started_at": utc_iso(series.started_at),
        "ended_at": utc_iso(series.ended_at),
        "window_seconds": round(series.window_seconds, 3),
        "states": [
            {"taken_at": utc_iso(taken_at), "taken_at_epoch": taken_at, **states_record(counts)}
            for taken_at, counts in series.state_history
        ],
        "counters": [
            {
                "name": delta.name,
                "delta": delta.delta,
                "per_second": round(delta.per_second, 3),
                "meaning": delta.meaning,
            }
            for delta in series.counter_deltas
        ],
        "growth": [
            {
                "pid": growth.pid,
                "process": growth.process,
                "state": growth.state.value,
                "first": growth.first,
                "last": growth.last,
                "per_minute": round(growth.per_minute, 2),
                "steady": growth.steady,
            }
            for growth in series.growth
        ],
    }


def report_record(report: Report) -> JSONObject:
    """The whole report except the sockets, which a renderer streams after it."""
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "host": host_record(report),
        "filters": list(report.filters),
        # The filter's options when they matched nothing (check then exits 3), else null.
        "empty_selection": report.empty_selection,
        "summary": summary_record(report),
        "attribution": attribution_record(report),
        "findings": [finding_record(finding) for finding in report.findings],
        "namespaces": namespace_records(report),
        "processes": [process_record(summary, report) for summary in report.processes],
        "unowned": unowned_record(report.unowned, report),
        "series": series_record(report.series),
        "notes": list(report.notes),
    }


def explanation_record(explanation: StateExplanation) -> JSONObject:
    """``tcphealth explain STATE --format json``."""
    return {
        "format": "tcphealth.explanation",
        "version": 1,
        "state": explanation.state.value,
        "spellings": list(explanation.spellings),
        "meaning": explanation.meaning,
        "enters": explanation.enters,
        "leaves": explanation.leaves,
        "stays": explanation.stays,
        "usual_blame": explanation.usual_blame.value,
        "normal_duration": explanation.normal_duration,
        "limit_seconds": explanation.limit_seconds,
        "action": explanation.action,
        "settings": {name: value for name, value in explanation.settings},
        "assumed": list(explanation.assumed),
    }


def thresholds_record(shown: ThresholdsReport) -> JSONObject:
    """``tcphealth config --format json``: the file they came from (null: the defaults), then
    every threshold by name."""
    return {"source": str(shown.origin) if shown.origin else None, **shown.values}


def code_record(entry: CodeEntry) -> JSONObject:
    """One code of ``tcphealth explain --codes --format json``."""
    return {
        "code": entry.code,
        "rule": entry.rule,
        "severities": [severity.label for severity in entry.severities],
        "from_series": entry.from_series,
        "meaning": entry.meaning,
    }
