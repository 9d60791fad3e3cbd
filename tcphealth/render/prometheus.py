"""The Prometheus exposition of a report: metric families for ``tcphealth serve`` (built afresh at
every scrape) and ``tcphealth metrics`` (a textfile for node_exporter).

Names follow the Prometheus naming rules: one prefix (``tcphealth_``), base units (seconds,
ratios from 0 to 1), ``_total`` only on counters, and no label whose values grow without bound.
Every label that names something on the host -- a process, a listener, a destination, a finding's
subject -- keeps the ``top`` largest of them and folds the rest into one ``other`` value, so a
scrape has at most a few hundred series whatever the host holds (the bound is stated in the
README, "Many hosts").

Label values are made of what a host's processes chose to call themselves, so each goes through
:func:`label_text`: control characters and undecodable bytes are written as escapes, and the
reserved values below are never produced by a real process name.

This module reads the report and the snapshot's kernel facts (counters, sysctls); it never
collects anything itself.
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from tcphealth import __version__
from tcphealth.model import TCP_STATES, Endpoint, Severity, Sysctls, TcpState
from tcphealth.render.text import inert
from tcphealth.report import STATE_ORDER, Report, table_counts

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable

PREFIX = "tcphealth"

# How many processes, listeners, destinations and findings each labelled metric names before
# folding the rest into OTHER.
DEFAULT_TOP = 20

OTHER = "other"  # everything past the top N
NO_PROCESS = "none"  # sockets no process holds (TIME_WAIT, orphans) or whose holder was unseen
UNNAMED = "unknown"  # a process whose name could not be read
_RESERVED = frozenset({OTHER, NO_PROCESS, UNNAMED})

# Upper bounds (seconds) of the age buckets: from a few seconds (a connection being set up or
# torn down) to a day (a leak).
AGE_BUCKETS: tuple[float, ...] = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

# The kernel counters node_exporter leaves out by default (its netstat collector's default
# fields); the ones it exports (ListenOverflows, ListenDrops, SyncookiesSent...) are not
# repeated here. Counter in the snapshot -> metric name (without _total) and help.
KERNEL_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "TcpExt.TCPTimeWaitOverflow",
        "kernel_time_wait_overflows",
        "Connections closed without TIME_WAIT because tcp_max_tw_buckets was reached "
        "(TcpExt TCPTimeWaitOverflow).",
    ),
    (
        "TcpExt.TCPReqQFullDrop",
        "kernel_request_queue_full_drops",
        "SYNs dropped because a listener's SYN queue was full (TcpExt TCPReqQFullDrop).",
    ),
    (
        "TcpExt.TCPReqQFullDoCookies",
        "kernel_request_queue_full_cookies",
        "SYNs answered with a SYN cookie because a SYN queue was full "
        "(TcpExt TCPReqQFullDoCookies).",
    ),
    (
        "TcpExt.TCPAbortOnMemory",
        "kernel_aborts_on_memory",
        "Connections reset because TCP memory or the orphan limit ran out "
        "(TcpExt TCPAbortOnMemory).",
    ),
    (
        "TcpExt.TCPMemoryPressures",
        "kernel_memory_pressures",
        "Times TCP entered memory pressure, tcp_mem's middle value (TcpExt TCPMemoryPressures).",
    ),
    (
        "TcpExt.TCPBacklogDrop",
        "kernel_backlog_drops",
        "Segments dropped because a socket's backlog was full (TcpExt TCPBacklogDrop).",
    ),
)

# States entered on an arriving ACK: tcp_info's time since the last ACK is a floor on the age
# in them (see tcphealth.diagnose.timeline; the same rule, applied inline in one pass).
_AGE_FLOOR_STATES = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2})


@dataclass(frozen=True)
class KernelFacts:
    """What the exposition needs of the snapshot besides the report."""

    counters: Mapping[str, int]
    sysctls: Sysctls


def label_text(value: str | None) -> str:
    """A label value from a name a process or a file chose: non-printable characters escaped
    (``evil\\x1b[31m``), and a name equal to a reserved value (``other``, ``none``, ``unknown``)
    marked so it cannot be taken for the bucket of that name.

    >>> label_text("nginx"), label_text("other"), label_text(None)
    ('nginx', 'other (process name)', 'unknown')
    """
    if value is None:
        return UNNAMED
    text = inert(value)
    return f"{text} (process name)" if text in _RESERVED else text


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


_Key = TypeVar("_Key", bound=tuple[str, ...])


def _top(values: Mapping[_Key, float], top: int) -> list[_Key]:
    """The ``top`` keys of ``values`` by value, ties broken by the key (reproducible output)."""
    ranked = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    return [key for key, _ in ranked[:top]]


def families(report: Report, kernel: KernelFacts, *, top: int = DEFAULT_TOP) -> list[Metric]:
    """Every metric family of one report, in a fixed order."""
    out: list[Metric] = [_sockets_by_state(report)]
    out.extend(_processes(report, top))
    out.extend(_findings(report, top))
    out.extend(_socket_pass(report, kernel.sysctls, top))
    out.extend(_kernel_counters(kernel.counters))
    timestamp = GaugeMetricFamily(
        _name("snapshot_timestamp_seconds"),
        "When the snapshot behind these metrics was taken (Unix time).",
        value=report.host.taken_at,
    )
    out.append(timestamp)
    return out


def table_families(
    report: Report, table: SocketTable, kernel: KernelFacts, *, top: int = DEFAULT_TOP
) -> list[Metric]:
    """:func:`families`, with every count over the sockets made over ``table`` (the same
    sockets as columns) instead of the report's socket objects: the report gives the
    findings, the processes and the time. The same families, series and values as
    :func:`families` of a report of those sockets (tests/test_lean_metrics.py compares the
    two on a live host). A single snapshot only: the ages a series saw are per socket."""
    import numpy as np

    from tcphealth.columnar import STATE_OF_CODE

    if report.series is not None:
        raise ValueError("the columns' metrics are of one snapshot, not of a series")
    columns = table.columns
    codes = np.bincount(columns.state, minlength=256).tolist()
    states: Counter[TcpState] = Counter()
    for code, count in enumerate(codes):
        if count:
            states[STATE_OF_CODE[code]] += count
    out: list[Metric] = [_state_family(states)]
    by_holders = table_counts(table)
    out.extend(_processes(report, top, _named(report, by_holders)))
    out.extend(_findings(report, top))
    out.extend(_table_socket_families(report, table, kernel.sysctls, top))
    out.extend(_kernel_counters(kernel.counters))
    out.append(
        GaugeMetricFamily(
            _name("snapshot_timestamp_seconds"),
            "When the snapshot behind these metrics was taken (Unix time).",
            value=report.host.taken_at,
        )
    )
    return out


# Kernel state codes (include/net/tcp_states.h) of the states the table's passes pick out.
_LISTEN_CODE, _TIME_WAIT_CODE = 10, 6
_FLOOR_CODES = (1, 8, 5)  # ESTABLISHED, CLOSE_WAIT, FIN_WAIT2: _AGE_FLOOR_STATES


def _table_socket_families(
    report: Report, table: SocketTable, sysctls: Sysctls, top: int
) -> Iterator[Metric]:
    """:func:`_socket_pass`'s families (listeners, TIME_WAIT per destination, ages) counted
    over the table: objects only for the listeners and for each distinct TIME_WAIT pair."""
    import numpy as np

    from tcphealth.columnar import STATE_OF_CODE, AddressTable, distinct_rows

    columns = table.columns
    listeners: dict[tuple[str, str], _ListenerAccumulator] = {}
    addresses = AddressTable()
    for row in np.flatnonzero(columns.state == _LISTEN_CODE).tolist():
        family = int(columns.family[row])
        address = addresses.get(family, int(columns.src_high[row]), int(columns.src_low[row]))
        _add_listener(
            listeners,
            report,
            Endpoint(address, int(columns.sport[row])),
            table.groups[int(table.holders[row])],
            int(columns.rqueue[row]),
            int(columns.wqueue[row]),  # a listener's maximum backlog
        )

    port_range = sysctls.ip_local_port_range
    time_wait: Counter[tuple[str, str]] = Counter()
    if port_range is not None:
        low, high = port_range
        sport = columns.sport
        chosen = (columns.state == _TIME_WAIT_CODE) & (sport >= low) & (sport <= high)
        rows = np.flatnonzero(chosen)
        # The distinct (local address, destination) pairs and how many rows each.
        (kinds, src_high, src_low, dst_high, dst_low, dport), counts = distinct_rows(
            columns.ends_at(rows)
        )
        for at, count in enumerate(counts):
            remote = Endpoint(addresses.get(kinds[at], dst_high[at], dst_low[at]), dport[at])
            source = addresses.get(kinds[at], src_high[at], src_low[at])
            time_wait[_destination_key(source, remote)] += count

    ages: dict[TcpState, Sequence[float]] = {}
    for code in _FLOOR_CODES:
        known = (columns.state == code) & columns.has_info
        if bool(known.any()):
            observed = np.sort(columns.last_ack_recv_ms[known] / 1000)
            ages[STATE_OF_CODE[code]] = observed.tolist()
    yield from _listener_families(listeners, top)
    yield from _time_wait_families(time_wait, port_range, top)
    yield _age_family(ages)


def _sockets_by_state(report: Report) -> Metric:
    return _state_family(report.states)


def _state_family(states: Mapping[TcpState, int]) -> Metric:
    family = GaugeMetricFamily(
        _name("sockets"), "TCP sockets on the host, by state.", labels=["state"]
    )
    for state in STATE_ORDER:
        count = states.get(state, 0)
        # The eleven TCP states always (a state at 0 is a fact); the two odd ones when seen.
        if count or state in TCP_STATES:
            family.add_metric([state.value], count)
    return family


def _sockets_by_name(report: Report) -> dict[tuple[str, ...], Counter[TcpState]]:
    """Sockets per process name and state. A socket held by several processes of one name
    (a listener shared by forked workers) counts once for that name; one held by processes
    of two names counts for each; one held by none counts under NO_PROCESS."""
    sockets = report.sockets
    # Counted per (holders, state) in C, then named once per distinct holder set.
    by_holders = Counter(zip(map(_PIDS, sockets), map(_STATE, sockets), strict=True))
    return _named(report, by_holders)


def _named(
    report: Report, by_holders: Mapping[tuple[tuple[int, ...], TcpState], int]
) -> dict[tuple[str, ...], Counter[TcpState]]:
    """Counts per (holders, state) made counts per process name and state."""
    names_of: dict[tuple[int, ...], set[str]] = {}
    by_name: dict[tuple[str, ...], Counter[TcpState]] = {}
    for (pids, state), count in by_holders.items():
        names = names_of.get(pids)
        if names is None:
            names = names_of[pids] = _holder_names(report, pids)
        for name in names:
            by_name.setdefault((name,), Counter())[state] += count
    return by_name


def _holder_names(report: Report, pids: tuple[int, ...]) -> set[str]:
    if not pids:
        return {NO_PROCESS}
    names = set()
    for pid in pids:
        process = report.process_by_pid.get(pid)
        names.add(label_text(process.name if process is not None else None))
    return names


_PIDS = operator.attrgetter("pids")
_STATE = operator.attrgetter("state")


def _processes(
    report: Report,
    top: int,
    sockets: dict[tuple[str, ...], Counter[TcpState]] | None = None,
) -> Iterator[Metric]:
    """The per-process families; ``sockets``: the counts per name and state, where the caller
    counted them (from columns) instead of the report's sockets."""
    if sockets is None:
        sockets = _sockets_by_name(report)
    open_fds: dict[tuple[str, ...], int] = {}
    fd_ratio: dict[tuple[str, ...], float] = {}
    for summary in report.processes:
        process = summary.process
        if process is None or process.open_fds is None:
            continue
        key: tuple[str, ...] = (label_text(process.name),)
        open_fds[key] = open_fds.get(key, 0) + process.open_fds
        if process.fd_soft_limit:
            ratio = process.open_fds / process.fd_soft_limit
            fd_ratio[key] = max(ratio, fd_ratio.get(key, 0.0))

    per_state = GaugeMetricFamily(
        _name("process_sockets"),
        f"TCP sockets held, by process name (the {top} names holding most, then '{OTHER}'; "
        f"'{NO_PROCESS}': held by no process seen) and state; a socket shared by processes "
        "of one name counts once.",
        labels=["process", "state"],
    )
    unowned = sockets.pop((NO_PROCESS,), None)
    totals = {key: float(sum(states.values())) for key, states in sockets.items()}
    kept = set(_top(totals, top))
    folded: dict[tuple[str, ...], Counter[TcpState]] = {}
    for key, states in sockets.items():
        target = key if key in kept else (OTHER,)
        folded.setdefault(target, Counter()).update(states)
    if unowned:
        folded[(NO_PROCESS,)] = unowned
    for (name,), states in sorted(folded.items()):
        for state in STATE_ORDER:
            if states.get(state):
                per_state.add_metric([name, state.value], states[state])
    yield per_state

    fds = GaugeMetricFamily(
        _name("process_open_fds"),
        f"Open file descriptors, summed over the processes of one name (the {top} names "
        f"closest to their limit, then '{OTHER}').",
        labels=["process"],
    )
    ratio_family = GaugeMetricFamily(
        _name("process_fd_limit_ratio"),
        "Open file descriptors over the soft limit (RLIMIT_NOFILE), the highest among the "
        "processes of one name: 1 means the next open() fails with EMFILE.",
        labels=["process"],
    )
    kept = set(_top({key: fd_ratio.get(key, 0.0) for key in open_fds}, top))
    folded_fds: dict[tuple[str, ...], int] = {}
    folded_ratio: dict[tuple[str, ...], float] = {}
    for key, count in open_fds.items():
        target = key if key in kept else (OTHER,)
        folded_fds[target] = folded_fds.get(target, 0) + count
        if key in fd_ratio:
            folded_ratio[target] = max(fd_ratio[key], folded_ratio.get(target, 0.0))
    for key, count in sorted(folded_fds.items()):
        fds.add_metric(list(key), count)
        if key in folded_ratio:
            ratio_family.add_metric(list(key), folded_ratio[key])
    yield fds
    yield ratio_family


_FINDING_LABELS = ["code", "severity", "blame", "subject", "process", "endpoint"]


def _findings(report: Report, top: int) -> Iterator[Metric]:
    per_severity = GaugeMetricFamily(
        _name("findings"),
        "Findings of the diagnosis, by severity (`tcphealth check` lists them).",
        labels=["severity"],
    )
    counts = report.count_by_severity()
    for severity in (Severity.CRITICAL, Severity.WARNING, Severity.INFO):
        per_severity.add_metric([severity.label.lower()], counts.get(severity, 0))
    yield per_severity

    sockets = GaugeMetricFamily(
        _name("finding_sockets"),
        "Sockets concerned by each finding, labelled by its stable code, severity, blame and "
        f"subject (the {top} most severe findings, then the rest of each code under "
        f"process and endpoint '{OTHER}'). `tcphealth check` explains each.",
        labels=_FINDING_LABELS,
    )
    values: dict[tuple[str, ...], int] = {}
    # report.findings is most severe first; equal label sets (two pids of one name) add up.
    for rank, finding in enumerate(report.findings):
        subject = finding.subject
        if rank < top:
            process = label_text(subject.process) if subject.process is not None else ""
            endpoint = inert(subject.endpoint) if subject.endpoint is not None else ""
        else:
            process, endpoint = OTHER, OTHER
        key: tuple[str, ...] = (
            inert(finding.code),
            finding.severity.label.lower(),
            inert(finding.blame.value),
            inert(subject.kind.value),
            process,
            endpoint,
        )
        values[key] = values.get(key, 0) + finding.count
    for key, count in values.items():
        sockets.add_metric(list(key), count)
    yield sockets


class _ListenerAccumulator:
    __slots__ = ("backlog", "queue")

    def __init__(self) -> None:
        self.queue = 0
        self.backlog: int | None = None


def _socket_pass(report: Report, sysctls: Sysctls, top: int) -> Iterator[Metric]:
    """Listeners, TIME_WAIT per destination and ages, in one pass over the sockets."""
    listeners: dict[tuple[str, str], _ListenerAccumulator] = {}
    # Keyed by the identities of the local and remote address objects, with the remote port
    # and name (sources share address objects, and the report keeps every one alive; an
    # address's own hash formats it as text), made text once per distinct key below.
    time_wait_by_ids: dict[tuple[int, int, int | None, str | None], int] = {}
    pair_of: dict[tuple[int, int, int | None, str | None], tuple[object, Endpoint]] = {}
    port_range = sysctls.ip_local_port_range
    low, high = port_range if port_range is not None else (1, 0)  # unknown: no port counted
    ages: dict[TcpState, list[float]] = {}
    listen, tw = TcpState.LISTEN, TcpState.TIME_WAIT
    floor_states = _AGE_FLOOR_STATES
    tracked = report.series is not None
    for sock in report.sockets:
        state = sock.state
        if state is listen:
            if sock.recv_queue is not None:
                _add_listener(
                    listeners, report, sock.local, sock.pids, sock.recv_queue, sock.listen_backlog
                )
        elif state is tw:
            port = sock.local.port
            if port is not None and low <= port <= high:
                address, remote = sock.local.address, sock.remote
                ids = (id(address), id(remote.address), remote.port, remote.name)
                seen = time_wait_by_ids.get(ids)
                if seen is None:
                    time_wait_by_ids[ids] = 1
                    pair_of[ids] = (address, remote)
                else:
                    time_wait_by_ids[ids] = seen + 1
        if tracked:
            age = report.age_at_least(sock)
        elif state in floor_states and (info := sock.tcp_info) is not None:
            last_ack = info.last_ack_recv_ms
            age = None if last_ack is None else last_ack / 1000
        else:
            age = None
        if age is not None:
            ages.setdefault(state, []).append(age)
    time_wait: Counter[tuple[str, str]] = Counter()
    for ids, count in time_wait_by_ids.items():
        time_wait[_destination_key(*pair_of[ids])] += count
    yield from _listener_families(listeners, top)
    yield from _time_wait_families(time_wait, port_range, top)
    yield _age_family({state: sorted(observed) for state, observed in ages.items()})


def _add_listener(
    listeners: dict[tuple[str, str], _ListenerAccumulator],
    report: Report,
    local: Endpoint,
    pids: tuple[int, ...],
    queue: int,
    backlog: int | None,
) -> None:
    names = report.process_names(pids)
    key = (inert(str(local)), label_text(names) if names else NO_PROCESS)
    acc = listeners.get(key)
    if acc is None:
        acc = listeners[key] = _ListenerAccumulator()
    acc.queue += queue
    if backlog is not None:
        acc.backlog = (acc.backlog or 0) + backlog


def _destination_key(address: object, remote: Endpoint) -> tuple[str, str]:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d is the IPv4 source
    return (str(mapped or address), inert(str(remote)))


def _listener_families(
    listeners: Mapping[tuple[str, str], _ListenerAccumulator], top: int
) -> Iterator[Metric]:
    queue = GaugeMetricFamily(
        _name("listener_accept_queue"),
        "Connections waiting for accept() on a listening address (summed over its sockets, "
        f"as with SO_REUSEPORT); the {top} fullest listeners, then '{OTHER}'.",
        labels=["endpoint", "process"],
    )
    backlog = GaugeMetricFamily(
        _name("listener_backlog"),
        "The accept queue's limit, min(listen() backlog, somaxconn), summed like the queue; "
        "absent where the source does not know it.",
        labels=["endpoint", "process"],
    )
    fill = {
        key: (acc.queue / acc.backlog if acc.backlog else float(acc.queue))
        for key, acc in listeners.items()
    }
    kept = set(_top(fill, top))
    folded: dict[tuple[str, str], _ListenerAccumulator] = {}
    for key, acc in listeners.items():
        target: tuple[str, str] = key if key in kept else (OTHER, OTHER)
        into = folded.get(target)
        if into is None:
            into = folded[target] = _ListenerAccumulator()
        into.queue += acc.queue
        if acc.backlog is not None:
            into.backlog = (into.backlog or 0) + acc.backlog
    for key, acc in sorted(folded.items()):
        queue.add_metric(list(key), acc.queue)
        if acc.backlog is not None:
            backlog.add_metric(list(key), acc.backlog)
    yield queue
    yield backlog


def _time_wait_families(
    time_wait: Counter[tuple[str, str]], port_range: tuple[int, int] | None, top: int
) -> Iterator[Metric]:
    sockets = GaugeMetricFamily(
        _name("time_wait_destination_sockets"),
        "TIME_WAIT sockets this host holds as the client (local port in ip_local_port_range), "
        f"by local address and destination; the {top} largest, then '{OTHER}'.",
        labels=["local_address", "destination"],
    )
    ratio = GaugeMetricFamily(
        _name("time_wait_destination_port_ratio"),
        "Those TIME_WAIT sockets over the size of ip_local_port_range: at 1 a new connect() "
        "to that destination fails with EADDRNOTAVAIL (the top destinations only).",
        labels=["local_address", "destination"],
    )
    kept = set(_top({key: float(count) for key, count in time_wait.items()}, top))
    other = 0
    for key, count in sorted(time_wait.items()):
        if key not in kept:
            other += count
            continue
        sockets.add_metric(list(key), count)
        if port_range is not None:
            ratio.add_metric(list(key), count / (port_range[1] - port_range[0] + 1))
    if other:
        sockets.add_metric([OTHER, OTHER], other)
    yield sockets
    yield ratio


def _age_family(ages: Mapping[TcpState, Sequence[float]]) -> Metric:
    """The histogram of ages per state; each state's ages sorted."""
    family = GaugeHistogramMetricFamily(
        _name("socket_state_age_seconds"),
        "How long sockets have been in their state, at least (tcp_info's time since the last "
        "ACK, a floor in ESTABLISHED, CLOSE_WAIT and FIN_WAIT2; longer where a series "
        "followed them); only sockets whose age is known.",
        labels=["state"],
    )
    for state in STATE_ORDER:
        observed = ages.get(state)
        if not observed:
            continue
        buckets = [
            (_bound_text(bound), bisect.bisect_right(observed, bound)) for bound in AGE_BUCKETS
        ]
        buckets.append(("+Inf", len(observed)))
        family.add_metric([state.value], list(buckets), gsum_value=sum(observed))
    return family


def _bound_text(bound: float) -> str:
    return repr(float(bound))


def _kernel_counters(counters: Mapping[str, int]) -> Iterator[Metric]:
    for key, suffix, help_text in KERNEL_COUNTERS:
        value = counters.get(key)
        if value is not None:  # absent from the source: no series, never a fake 0
            yield CounterMetricFamily(_name(suffix), help_text, value=value)


def self_families(
    *, success: bool, duration_seconds: float | None, extra: Iterable[Metric] = ()
) -> list[Metric]:
    """What the exporter says about itself: its version, whether the last collection worked
    and how long it took (omitted for a file, where it would measure only the reading)."""
    build = InfoMetricFamily(_name("build"), "The tcphealth that made these metrics.")
    build.add_metric([], {"version": __version__})
    out: list[Metric] = [
        build,
        GaugeMetricFamily(
            _name("collect_success"),
            "1 if the last collection and diagnosis worked, 0 if it failed (see the log).",
            value=1 if success else 0,
        ),
    ]
    if duration_seconds is not None:
        out.append(
            GaugeMetricFamily(
                _name("collect_duration_seconds"),
                "Wall time of the last collection and diagnosis.",
                value=duration_seconds,
            )
        )
    out.extend(extra)
    return out


def collect_path_family(path: str, reason: str = "") -> Metric:
    """Which way ``serve`` collected: ``lean`` (the columns) or ``full`` (one object per
    socket, as ``tcphealth metrics``), and why not lean (a few fixed phrases)."""
    family = InfoMetricFamily(
        _name("collect_path"),
        "How the last collection was made: lean (sockets as columns) or full (one object "
        "per socket, costlier), with the reason for full.",
    )
    family.add_metric([], {"path": path, "reason": reason})
    return family


class StaticCollector:
    """A collector that yields families already built (for a textfile or a one-off render)."""

    def __init__(self, built: Iterable[Metric]) -> None:
        self._built = list(built)

    def collect(self) -> Iterator[Metric]:
        yield from self._built


def exposition(built: Iterable[Metric], *, openmetrics: bool = False) -> bytes:
    """The text format (version 0.0.4), or OpenMetrics, of the given families."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StaticCollector(built))
    if openmetrics:
        return generate_openmetrics(registry)  # type: ignore[no-untyped-call,no-any-return]
    return generate_latest(registry)
