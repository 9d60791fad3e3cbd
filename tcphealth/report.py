"""The report: one snapshot and its findings, arranged for reading, and the exit-code policy.

Every renderer (table, plain, JSON, NDJSON) reads a :class:`Report` and nothing else, so the
outputs cannot disagree. Building one is a single pass over the sockets: 300,000 sockets cost a
few hundred thousand dictionary updates, never a sort or a search per socket.

Sockets are summarised per process in *groups*: sockets of one process in one state between the
same two endpoints, where the ephemeral side's port is dropped (shown as ``*``). So 400
CLOSE_WAIT connections from ``10.0.0.5:40001..40400`` to a database read as one row
``CLOSE_WAIT 10.0.0.5:* → 10.20.0.15:5432 count 400``. On the server side the clients' addresses
are dropped too when there are several: 90 connections from 40 clients to port 8000 read as
``ESTABLISHED 10.0.0.6:8000 → *:* count 90 peers 40``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tcphealth.diagnose import AGE_DECIDES
from tcphealth.diagnose import config as diagnose_config
from tcphealth.diagnose.config import Thresholds, thresholds_as_toml
from tcphealth.diagnose.timeline import (
    ENTERED_ON_ACK,
    Age,
    ConnectionKey,
    connection_key,
    kernel_age_floor,
)
from tcphealth.filters import notes_for_selection
from tcphealth.model import (
    TCP_STATES,
    Attribution,
    Endpoint,
    Finding,
    HostInfo,
    NetNamespace,
    OwnerSource,
    Process,
    Severity,
    Snapshot,
    Socket,
    TcpState,
    finding_order,
)
from tcphealth.states import DEFAULT_PORT_RANGE

if TYPE_CHECKING:
    from tcphealth.columnar import SocketTable
    from tcphealth.series_facts import SeriesFacts  # only named here: a series loads it


class ExitCode(enum.IntEnum):
    """What the process exit status means; the same numbers Nagios/Icinga plugins use."""

    OK = 0  # nothing reached --fail-on
    WARNING = 1  # the worst finding at or above --fail-on is a warning (or info)
    CRITICAL = 2  # a critical finding
    INPUT_UNREADABLE = 3  # no report could be made: unreadable input, bad config, bad usage


# The order states are listed in everywhere: the eleven TCP states, then the two odd ones.
STATE_ORDER: tuple[TcpState, ...] = (*TCP_STATES, TcpState.BOUND_INACTIVE, TcpState.UNKNOWN)
_STATE_RANK = {state: rank for rank, state in enumerate(STATE_ORDER)}


@dataclass(frozen=True, slots=True)  # a report of 300,000 connections may hold as many
class SocketGroup:
    """Sockets of one owner in one state between the same endpoints (ephemeral port as ``*``).

    Queue values are the largest seen in the group (``None`` when no socket in it had one);
    for LISTEN, ``recv_queue_max`` is the accept-queue length and ``listen_backlog`` its limit.
    """

    state: TcpState
    local: Endpoint
    remote: Endpoint | None  # None: several remote addresses (``peers`` of them), shown "*:*"
    count: int
    recv_queue_max: int | None = None
    send_queue_max: int | None = None
    listen_backlog: int | None = None
    peers: int = 1  # distinct remote addresses in the group
    # The longest any socket of the group has been in its state, at least (the series, or
    # tcp_info's floor; see diagnose.timeline); None where neither tells.
    oldest_seconds: float | None = None
    # The network namespace (inode) the group's sockets are in, where the report covers
    # several; None in a report of one namespace.
    netns: int | None = None
    # Sockets of the group no descriptor holds, credited to the listener's process because
    # they wait in its accept queue (never accepted): ss shows them without an owner.
    unaccepted: int = 0

    @property
    def remote_text(self) -> str:
        return "*:*" if self.remote is None else str(self.remote)


@dataclass(frozen=True)
class OwnerSummary:
    """The sockets of one process -- or, with ``process`` None, the sockets no process holds."""

    process: Process | None
    socket_count: int
    states: dict[TcpState, int]
    groups: tuple[SocketGroup, ...]
    findings: tuple[Finding, ...] = ()  # those whose subject is this process, worst first

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def worst(self) -> Finding | None:
        return self.findings[0] if self.findings else None


@dataclass(frozen=True)
class Report:
    host: HostInfo
    attribution: Attribution
    socket_count: int
    states: dict[TcpState, int]  # only states that occur, in STATE_ORDER
    findings: tuple[Finding, ...]  # in finding_order: most severe first, then largest
    processes: tuple[OwnerSummary, ...]  # processes with findings first, then by socket count
    unowned: OwnerSummary  # sockets no process holds (or whose holder we could not see)
    notes: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()  # how the snapshot was narrowed, e.g. ("state=CLOSE_WAIT",)
    # Counts per state a pasted summary gave without listing the sockets (Snapshot.state_counts).
    reported_states: dict[str, int] = field(default_factory=dict)
    truncated_sockets: int = 0  # sockets whose printed address the source's tool cut short
    skipped_lines: int = 0  # input lines that looked like rows and could not be read
    sockets: tuple[Socket, ...] = ()  # every socket, in snapshot order, for the sockets views
    process_by_pid: Mapping[int, Process] = field(default_factory=dict)
    # Made from several samples (--samples, watch, a series file): what time showed.
    series: SeriesFacts | None = None
    # The network namespaces read (Snapshot.namespaces); empty when the source knew of none.
    namespaces: tuple[NetNamespace, ...] = ()
    # The filter's options when they matched no socket (nor, for --pid/--process, any
    # process): nothing was looked at, which is not the same as nothing wrong.
    empty_selection: str | None = None

    def place(
        self, netns: int | None, pids: tuple[int, ...]
    ) -> tuple[str | None, str | None, str | None]:
        """Where sockets of namespace ``netns`` held by ``pids`` are: the namespace's label,
        the container's and the pod's names (a holder's container, else the namespace's);
        None for what is not known."""
        namespace = self.namespace(netns)
        container = None
        for pid in pids:
            process = self.process_by_pid.get(pid)
            if process is not None and process.container is not None:
                container = process.container
                break
        if container is None and namespace is not None:
            container = namespace.container
        if container is None:
            return (namespace.label if namespace else None), None, None
        return (
            namespace.label if namespace else None,
            container.label if container.id or container.name else None,
            container.pod or container.pod_uid,
        )

    @property
    def container_count(self) -> int:
        """How many distinct containers the processes and namespaces read are in."""
        seen = {
            process.container.id
            for process in self.process_by_pid.values()
            if process.container is not None and process.container.id is not None
        }
        seen |= {
            namespace.container.id
            for namespace in self.namespaces
            if namespace.container is not None and namespace.container.id is not None
        }
        return len(seen)

    def namespace(self, inode: int | None) -> NetNamespace | None:
        """The namespace of this inode; with None, the only one when there is one."""
        if inode is None:
            return self.namespaces[0] if len(self.namespaces) == 1 else None
        return self._namespace_by_inode.get(inode)

    @functools.cached_property
    def _namespace_by_inode(self) -> dict[int, NetNamespace]:
        return {namespace.inode: namespace for namespace in self.namespaces}

    def age_of(self, sock: Socket) -> Age | None:
        """How long ``sock`` has been in its state, as far as the series followed it."""
        if self.series is None:
            return None
        return self.series.ages.get(connection_key(sock))

    def age_at_least(self, sock: Socket) -> float | None:
        """Seconds ``sock`` has been in its state at least: the series, else tcp_info's floor."""
        age = self.age_of(sock)
        return age.at_least_seconds if age is not None else kernel_age_floor(sock)

    @property
    def worst_severity(self) -> Severity:
        return self.findings[0].severity if self.findings else Severity.OK

    @property
    def age_decides(self) -> int:
        """Sockets below every threshold that no timer ends and whose age is unknown or has
        lasted (the findings of codes declared ``age_decides``): not "no problems", not a
        warning either."""
        return sum(finding.count for finding in self.findings if finding.code in AGE_DECIDES)

    def count_by_severity(self) -> dict[Severity, int]:
        counts = Counter(finding.severity for finding in self.findings)
        return {severity: counts[severity] for severity in sorted(Severity, reverse=True)}

    def exit_code(self, fail_on: Severity = Severity.WARNING) -> ExitCode:
        """0 when no finding reaches ``fail_on``; else 2 for a critical finding, 1 otherwise
        (so ``fail_on=INFO`` with only INFO findings gives 1)."""
        worst = self.worst_severity
        if worst is Severity.OK or worst < fail_on:
            return ExitCode.OK
        if worst >= Severity.CRITICAL:
            return ExitCode.CRITICAL
        return ExitCode.WARNING

    def process_names(self, pids: Iterable[int]) -> str | None:
        """The distinct names of the processes holding a socket, joined by ','."""
        names: list[str] = []
        for pid in pids:
            process = self.process_by_pid.get(pid)
            name = process.name if process and process.name else None
            if name is not None and name not in names:
                names.append(name)
        return ",".join(names) if names else None


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """In the one order of :func:`tcphealth.model.finding_order` (the diagnosis's own)."""
    return tuple(sorted(findings, key=finding_order))


class _Grouping:
    """The endpoints a socket is grouped under: the client side loses its port (the rule
    below is applied by :func:`_group_by_identity`, in its loop over every socket).

    A listener keeps both. A socket whose local port is one this host listens on is the
    service side; one whose remote port is, and whose local port is not, is a client of it.
    Otherwise the side whose port lies in the ephemeral range is the client side. When both or
    neither do (a service bound to a port of the ephemeral range whose listener is gone or not
    shown: client TIME_WAIT left after a test server stopped, a paste without the LISTEN row),
    the end that more of those undecided sockets share is the service -- clients come from
    many ports, a service takes them on one; where that ties too, the side with the higher port
    is taken to be the client.

    The endpoint without its port is made once per address object and shared: sources share
    address objects, so 300,000 sockets need a few of them, not 300,000.
    """

    def __init__(
        self,
        ephemeral: tuple[int, int],
        listening: frozenset[int],
        sockets: Iterable[Socket] = (),
    ) -> None:
        self.low, self.high = ephemeral
        self.listening = listening
        self._sockets = sockets
        # Endpoint -> how many undecided sockets have it at either end; counted on the first
        # undecided socket only, so a host where every socket is decided pays nothing.
        self._shared: Counter[Endpoint] | None = None
        # id(address) -> Endpoint(address, None)
        self.without_port_by_id: dict[int, Endpoint] = {}
        self.without_port_by_name: dict[str, Endpoint] = {}
        self._addresses: list[object] = []  # keeps those ids' objects alive, hence unique

    def undecided(self, local_port: int, remote_port: int) -> bool:
        """Whether neither the listeners nor the port range tell the client side."""
        if local_port in self.listening or remote_port in self.listening:
            return False
        low, high = self.low, self.high
        return (low <= local_port <= high) == (low <= remote_port <= high)

    def local_is_client(self, sock: Socket) -> bool:
        """For an :meth:`undecided` socket: whether its local end is the client's."""
        shared = self._shared
        if shared is None:
            shared = self._shared = Counter()
            for one in self._sockets:
                local, remote = one.local, one.remote
                if (
                    one.state is not TcpState.LISTEN
                    and local.port is not None
                    and remote.port is not None
                    and self.undecided(local.port, remote.port)
                ):
                    shared[local] += 1
                    shared[remote] += 1
        local_count, remote_count = shared[sock.local], shared[sock.remote]
        if local_count != remote_count:
            return local_count < remote_count
        assert sock.local.port is not None and sock.remote.port is not None
        return sock.local.port >= sock.remote.port

    def without_port(self, endpoint: Endpoint) -> Endpoint:
        address = endpoint.address
        if endpoint.name is not None:
            # A paste's host name or mask: its address is the family's stand-in, shared by
            # every name, so the name is what keeps it apart (and what is shown).
            named = self.without_port_by_name.get(endpoint.name)
            if named is None or named.address != address:
                named = Endpoint(address, None, endpoint.name)
                self.without_port_by_name[endpoint.name] = named
            return named
        shared = self.without_port_by_id.get(id(address))
        if shared is None:
            shared = self.without_port_by_id[id(address)] = Endpoint(address, None)
            self._addresses.append(address)
        return shared


class _GroupAccumulator:
    __slots__ = (
        "count",
        "listen_backlog",
        "oldest",
        "recv_queue_max",
        "send_queue_max",
        "unaccepted",
    )

    def __init__(self) -> None:
        self.count = 0
        self.unaccepted = 0
        self.recv_queue_max: int | None = None
        self.send_queue_max: int | None = None
        self.listen_backlog: int | None = None
        self.oldest: float | None = None

    def add(self, sock: Socket, age: float | None) -> None:
        # The most frequent call of a report: kept to plain comparisons.
        self.count += 1
        value = sock.recv_queue
        if value is not None and (self.recv_queue_max is None or value > self.recv_queue_max):
            self.recv_queue_max = value
        value = sock.send_queue
        if value is not None and (self.send_queue_max is None or value > self.send_queue_max):
            self.send_queue_max = value
        value = sock.listen_backlog
        if value is not None and (self.listen_backlog is None or value > self.listen_backlog):
            self.listen_backlog = value
        if age is not None and (self.oldest is None or age > self.oldest):
            self.oldest = age
        if sock.owner_source is _CREDITED_TO_LISTENER:
            self.unaccepted += 1

    def merge(self, other: _GroupAccumulator) -> None:
        self.count += other.count
        self.unaccepted += other.unaccepted
        self.recv_queue_max = _larger(self.recv_queue_max, other.recv_queue_max)
        self.send_queue_max = _larger(self.send_queue_max, other.send_queue_max)
        self.listen_backlog = _larger(self.listen_backlog, other.listen_backlog)
        if other.oldest is not None and (self.oldest is None or other.oldest > self.oldest):
            self.oldest = other.oldest

    def group(
        self, state: TcpState, local: Endpoint, remote: Endpoint | None, peers: int
    ) -> SocketGroup:
        return SocketGroup(
            state=state,
            local=local,
            remote=remote,
            count=self.count,
            recv_queue_max=self.recv_queue_max,
            send_queue_max=self.send_queue_max,
            listen_backlog=self.listen_backlog,
            peers=peers,
            oldest_seconds=self.oldest,
            unaccepted=self.unaccepted,
        )


_CREDITED_TO_LISTENER = OwnerSource.LISTENER


def _larger(current: int | None, seen: int | None) -> int | None:
    if seen is None:
        return current
    return seen if current is None or seen > current else current


_GroupKey = tuple[TcpState, Endpoint, Endpoint]
_PIDS = operator.attrgetter("pids")
_STATE = operator.attrgetter("state")
_TRUNCATED = operator.attrgetter("truncated")


class _OwnerAccumulator:
    __slots__ = ("groups", "socket_count", "states")

    def __init__(self) -> None:
        self.socket_count = 0
        self.states: Counter[TcpState] = Counter()
        self.groups: dict[_GroupKey, _GroupAccumulator] = {}

    def add_count(self, state: TcpState, count: int) -> None:
        """Count ``count`` sockets in ``state`` without grouping them."""
        self.socket_count += count
        self.states[state] += count

    def add_group(self, key: _GroupKey, sockets: _GroupAccumulator, *, adopt: bool) -> None:
        """Add the sockets of one group (all in state ``key[0]``). ``adopt``: ``sockets`` is
        given to this owner alone, so it may be kept as it is (and merged into) rather than
        copied -- one accumulator a group, not two."""
        self.socket_count += sockets.count
        self.states[key[0]] += sockets.count
        group = self.groups.get(key)
        if group is None:
            if adopt:
                self.groups[key] = sockets
                return
            group = self.groups[key] = _GroupAccumulator()
        group.merge(sockets)

    def summary(self, process: Process | None, findings: tuple[Finding, ...]) -> OwnerSummary:
        groups: list[SocketGroup] = []
        # Server side (the remote port was dropped): one group per (state, local endpoint),
        # whatever the clients' addresses, when there are several of them.
        served: dict[tuple[TcpState, Endpoint], list[tuple[Endpoint, _GroupAccumulator]]] = {}
        # Each accumulator is let go as its group is made (in their order: the sort below is
        # stable), so that the two are never both whole. The summary is made once.
        for key in list(self.groups):
            acc = self.groups.pop(key)
            state, local, remote = key
            if remote.port is None and local.port is not None:
                served.setdefault((state, local), []).append((remote, acc))
            else:
                groups.append(acc.group(state, local, remote, peers=1))
        for (state, local), members in served.items():
            if len(members) == 1:
                remote, acc = members[0]
                groups.append(acc.group(state, local, remote, peers=1))
                continue
            total = _GroupAccumulator()
            for _, acc in members:
                total.merge(acc)
            groups.append(total.group(state, local, None, peers=len(members)))
        # Biggest groups first so a cut-off table keeps what matters; the rest only makes the
        # order reproducible.
        groups.sort(key=_group_sort_key)
        return OwnerSummary(
            process=process,
            socket_count=self.socket_count,
            states=_ordered_states(self.states),
            groups=tuple(groups),
            findings=findings,
        )


def _group_sort_key(group: SocketGroup) -> tuple[int, int, str, str]:
    return (-group.count, _STATE_RANK[group.state], str(group.local), group.remote_text)


def _ordered_states(counts: Mapping[TcpState, int]) -> dict[TcpState, int]:
    return {state: counts[state] for state in STATE_ORDER if counts.get(state)}


_GroupsByIdentity = dict[
    tuple[tuple[int, ...], TcpState, int, int], tuple[Endpoint, Endpoint, _GroupAccumulator]
]


def _group_by_identity(
    sockets: Iterable[Socket], grouping: _Grouping, ages: Mapping[ConnectionKey, Age] | None
) -> tuple[_GroupsByIdentity, int]:
    """The groups of ``sockets`` keyed by holders, state and the identity of the endpoints
    they are grouped under (the rule of :class:`_Grouping`), and how many sockets were
    truncated."""
    # The one pass over the sockets: each goes into the group of its holders (the pid tuple),
    # state and endpoints. The groups are then handed to each holder, so a socket costs one
    # dictionary update however many processes share it. The pass keys the endpoints by
    # object identity (sources and the grouping share endpoint objects, and hashing an
    # Endpoint is Python code); groups of equal endpoints held in different objects are
    # joined afterwards, once per group instead of once per socket.
    #
    # The hottest loop of a report: the grouping rule, the cache of _Grouping.without_port
    # and kernel_age_floor are written out here (a Python call per socket each would cost
    # 0.1 s at 300,000); tests/test_report.py checks the loop against a plain statement of
    # the rule and against kernel_age_floor.
    by_identity: _GroupsByIdentity = {}
    truncated = 0
    without_port = grouping.without_port_by_id
    listen = TcpState.LISTEN
    low, high, listening_ports = grouping.low, grouping.high, grouping.listening
    entered_on_ack = ENTERED_ON_ACK
    for sock in sockets:
        truncated += sock.truncated
        state = sock.state
        local, remote = sock.local, sock.remote
        local_port, remote_port = local.port, remote.port
        if state is not listen and local_port is not None and remote_port is not None:
            if local_port in listening_ports:
                collapse_local = False
            elif remote_port in listening_ports:
                collapse_local = True
            else:
                local_ephemeral = low <= local_port <= high
                if local_ephemeral != (low <= remote_port <= high):
                    collapse_local = local_ephemeral
                else:
                    collapse_local = grouping.local_is_client(sock)
            if collapse_local:
                shared = without_port.get(id(local.address))
                local = shared if shared is not None else grouping.without_port(local)
            else:
                shared = without_port.get(id(remote.address))
                remote = shared if shared is not None else grouping.without_port(remote)
        key = (sock.pids, state, id(local), id(remote))
        entry = by_identity.get(key)
        if entry is None:
            entry = by_identity[key] = (local, remote, _GroupAccumulator())
        if ages is not None and (tracked := ages.get(connection_key(sock))) is not None:
            age: float | None = tracked.at_least_seconds
        else:
            info = sock.tcp_info
            age = (
                None
                if info is None or info.last_ack_recv_ms is None or state not in entered_on_ack
                else info.last_ack_recv_ms / 1000
            )
        entry[2].add(sock, age)
    return by_identity, truncated


def build_report(
    snapshot: Snapshot,
    findings: Iterable[Finding],
    *,
    filters: tuple[str, ...] = (),
    series: SeriesFacts | None = None,
    empty_selection: str | None = None,
    grouped: bool = True,
    table: SocketTable | None = None,
) -> Report:
    """Arrange a (possibly filtered) snapshot and the findings the diagnosis made of it;
    ``series`` when the snapshot is the latest of several samples.

    ``table``: every socket of the snapshot as columns (the snapshot listing only some as
    objects, see SnapshotIndex.build_table): the counts per state and holder come from it,
    and the report lists no socket objects (only the metrics read such a report, through
    the table).

    ``grouped=False`` leaves out the groups of sockets of each process (its table in the
    other formats), keeping their counts per state: what the metrics read, for a third of
    the report's cost at 100,000 sockets."""
    ordered = sort_findings(findings)
    states: Counter[TcpState] = Counter()
    owners: dict[int, _OwnerAccumulator] = {}
    unowned = _OwnerAccumulator()
    if table is not None:
        if grouped or series is not None:
            raise ValueError("a table's report is of one snapshot, without groups")
        truncated = 0  # the columns come from netlink, which cuts no address short
        counts = table_counts(table)
    elif not grouped:
        # Counted per (holders, state) in C; no endpoint is looked at.
        truncated = sum(map(_TRUNCATED, snapshot.sockets))
        sockets = snapshot.sockets
        counts = Counter(zip(map(_PIDS, sockets), map(_STATE, sockets), strict=True))
    if not grouped:
        for (holders, state), count in counts.items():
            states[state] += count
            if not holders:
                unowned.add_count(state, count)
            for pid in holders:
                owner = owners.get(pid)
                if owner is None:
                    owner = owners[pid] = _OwnerAccumulator()
                owner.add_count(state, count)
    else:
        # Linux's default range when the snapshot does not know the host's
        ephemeral = snapshot.sysctls.ip_local_port_range or DEFAULT_PORT_RANGE
        listening = frozenset(
            sock.local.port
            for sock in snapshot.sockets
            if sock.state is TcpState.LISTEN and sock.local.port is not None
        )
        grouping = _Grouping(ephemeral, listening, snapshot.sockets)
        ages = series.ages if series is not None else None
        by_identity, truncated = _group_by_identity(snapshot.sockets, grouping, ages)
        # Each group goes to its holders straight away: an owner's groups are keyed by equal
        # endpoints, which joins the groups of equal endpoints held in different objects.
        # Taken out of by_identity as they go, so that the two are never both whole (with
        # every connection a group of its own, each holds one entry a socket).
        for key in list(by_identity):
            holders, state, _, _ = key
            local, remote, group = by_identity.pop(key)
            states[state] += group.count
            # Each group of by_identity is looked at once, here: the only holder may adopt it.
            if not holders:
                unowned.add_group((state, local, remote), group, adopt=True)
            for pid in holders:  # a socket shared after fork() counts for every holder
                owner = owners.get(pid)
                if owner is None:
                    owner = owners[pid] = _OwnerAccumulator()
                owner.add_group((state, local, remote), group, adopt=len(holders) == 1)
        del by_identity

    process_by_pid = {process.pid: process for process in snapshot.processes}
    findings_by_pid: dict[int, list[Finding]] = {}
    for finding in ordered:
        # Every process a finding is about carries it, so none of them reads "nothing wrong".
        for pid in finding.subject.pids:
            findings_by_pid.setdefault(pid, []).append(finding)

    # Every process the snapshot lists, every pid holding a socket, every pid a finding names.
    pids = set(process_by_pid) | set(owners) | set(findings_by_pid)
    summaries = [
        owners.get(pid, _OwnerAccumulator()).summary(
            process_by_pid.get(pid, Process(pid=pid)), tuple(findings_by_pid.get(pid, ()))
        )
        for pid in pids
    ]
    summaries.sort(key=process_sort_key)
    return Report(
        host=snapshot.host,
        attribution=snapshot.attribution,
        socket_count=len(snapshot.sockets) if table is None else len(table),
        states=_ordered_states(states),
        findings=ordered,
        processes=tuple(summaries),
        unowned=unowned.summary(None, ()),
        notes=notes_for_selection(snapshot, filters),
        filters=filters,
        reported_states=dict(snapshot.state_counts),
        truncated_sockets=truncated,
        skipped_lines=snapshot.skipped_lines,
        sockets=snapshot.sockets if table is None else (),
        process_by_pid=process_by_pid,
        series=series,
        empty_selection=empty_selection,
    )


def table_counts(table: SocketTable) -> Counter[tuple[tuple[int, ...], TcpState]]:
    """Sockets per (holders, state) over a table's rows, counted by numpy."""
    import numpy as np

    from tcphealth.columnar import STATE_OF_CODE

    pairs, pair_counts = np.unique(
        table.holders.astype(np.uint64) * np.uint64(256) + table.columns.state,
        return_counts=True,
    )
    counts: Counter[tuple[tuple[int, ...], TcpState]] = Counter()
    for pair, count in zip(pairs.tolist(), pair_counts.tolist(), strict=True):
        counts[table.groups[pair >> 8], STATE_OF_CODE[pair & 0xFF]] += count
    return counts


def process_sort_key(summary: OwnerSummary) -> tuple[int, int, int]:
    worst = summary.worst.severity if summary.worst else Severity.OK
    return (-worst, -summary.socket_count, summary.pid or 0)


@dataclass(frozen=True)
class ThresholdsReport:
    """What ``tcphealth config`` shows: the thresholds in effect, as values by name and as the
    TOML file tcphealth reads back, and where they came from."""

    values: Mapping[str, object]
    toml: str
    origin: Path | None  # the file read; None: the defaults, no file was found
    searched: tuple[Path, ...]  # where a file is looked for when none is named


def thresholds_report(thresholds: Thresholds, origin: Path | None) -> ThresholdsReport:
    return ThresholdsReport(
        values=dataclasses.asdict(thresholds),
        toml=thresholds_as_toml(thresholds),
        origin=origin,
        searched=diagnose_config.SEARCH_PATHS,  # looked up now: a test may point it elsewhere
    )
