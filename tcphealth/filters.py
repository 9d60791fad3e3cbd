"""Narrow a snapshot to the sockets a user asked about, before the diagnosis sees it.

Every criterion is optional. Values of one criterion are alternatives (``--state CLOSE_WAIT
--state TIME_WAIT`` keeps both states); different criteria must all hold (``--state LISTEN
--port 80`` keeps listeners on port 80). ``--port`` matches the local or the remote port;
``--local``/``--remote`` take an address or a CIDR network, and an IPv4 network also matches
the v4-mapped IPv6 form of its addresses (``::ffff:10.0.0.5`` is in ``10.0.0.0/8``).
``--pid``/``--process`` keep sockets held by a matching process; a socket nobody holds never
matches them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from tcphealth.model import (
    Container,
    Endpoint,
    Family,
    Finding,
    IPAddress,
    NetNamespace,
    OwnerSource,
    Severity,
    Snapshot,
    Socket,
    SubjectKind,
    TcpState,
)
from tcphealth.phrases import unseen_owner_note

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FilterError(ValueError):
    """A filter value that means nothing, e.g. ``--local 10.0.0.300``. The message is one line."""


def parse_network(text: str) -> IPNetwork:
    """An address or a CIDR network; an IPv6 address may be written in brackets.

    >>> parse_network("10.0.0.0/8")
    IPv4Network('10.0.0.0/8')
    >>> parse_network("[2001:db8::1]")
    IPv6Network('2001:db8::1/128')
    """
    cleaned = text.strip()
    if cleaned.startswith("[") and "]" in cleaned:
        address, _, rest = cleaned[1:].partition("]")
        cleaned = address + rest
    try:
        return ipaddress.ip_network(cleaned, strict=False)
    except ValueError:
        raise FilterError(
            f"{text!r} is not an IP address or a CIDR network (use --port for ports)"
        ) from None


def _address_in(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    for network in networks:
        if address.version == network.version and address in network:
            return True
        if mapped is not None and network.version == 4 and mapped in network:
            return True
    return False


@dataclass(frozen=True)
class SocketFilter:
    states: frozenset[TcpState] = frozenset()
    ports: frozenset[int] = frozenset()
    pids: frozenset[int] = frozenset()
    processes: tuple[str, ...] = ()  # fnmatch globs on the process name, case-sensitive
    local: tuple[IPNetwork, ...] = ()
    remote: tuple[IPNetwork, ...] = ()
    families: frozenset[Family] = frozenset()
    containers: tuple[str, ...] = ()  # fnmatch globs on the container's name, label or id
    pods: tuple[str, ...] = ()  # fnmatch globs on the pod's namespace/name (or uid)

    @property
    def active(self) -> bool:
        return any(
            (
                self.containers,
                self.pods,
                self.states,
                self.ports,
                self.pids,
                self.processes,
                self.local,
                self.remote,
                self.families,
            )
        )

    @property
    def selects_owners(self) -> bool:
        return bool(self.pids or self.processes)

    @property
    def selects_sockets(self) -> bool:
        """Criteria on the sockets themselves (state, port, address, family), not on who
        holds them."""
        return bool(self.states or self.ports or self.local or self.remote or self.families)

    def describe(self) -> tuple[str, ...]:
        """The criteria as ``key=value`` words, for the report header."""
        words: list[str] = []
        if self.states:
            order = list(TcpState)
            words.append("state=" + ",".join(s.value for s in sorted(self.states, key=order.index)))
        if self.ports:
            words.append("port=" + ",".join(_port_runs(self.ports)))
        if self.pids:
            words.append("pid=" + ",".join(str(pid) for pid in sorted(self.pids)))
        if self.processes:
            words.append("process=" + ",".join(self.processes))
        if self.local:
            words.append("local=" + ",".join(str(network) for network in self.local))
        if self.remote:
            words.append("remote=" + ",".join(str(network) for network in self.remote))
        if self.families:
            words.append("family=" + ",".join(sorted(family.value for family in self.families)))
        if self.containers:
            words.append("container=" + ",".join(self.containers))
        if self.pods:
            words.append("pod=" + ",".join(self.pods))
        return tuple(words)


def _matching_pids(snapshot: Snapshot, flt: SocketFilter) -> set[int]:
    """Pids (of listed processes and of socket holders) that pass --pid and --process."""
    names = {process.pid: process.name for process in snapshot.processes}
    candidates = set(names)
    for sock in snapshot.sockets:
        candidates.update(sock.pids)
    matching: set[int] = set()
    for pid in candidates:
        if flt.pids and pid not in flt.pids:
            continue
        if flt.processes:
            name = names.get(pid)
            if name is None or not any(fnmatch.fnmatchcase(name, g) for g in flt.processes):
                continue
        matching.add(pid)
    return matching


def _container_matches(container: Container | None, flt: SocketFilter) -> bool:
    """Whether ``container`` passes --container and --pod (both, where both are given)."""
    if container is None:
        return False
    if flt.containers:
        names = [container.label, container.name, container.id, (container.id or "")[:12] or None]
        if not any(
            name is not None and fnmatch.fnmatchcase(name, glob)
            for glob in flt.containers
            for name in names
        ):
            return False
    if flt.pods:
        names = [container.pod, container.pod_uid]
        if not any(
            name is not None and fnmatch.fnmatchcase(name, glob)
            for glob in flt.pods
            for name in names
        ):
            return False
    return True


def _placed(snapshot: Snapshot, flt: SocketFilter) -> tuple[set[int], set[int]]:
    """The pids and the namespaces (inodes) that pass --container and --pod."""
    pids = {
        process.pid for process in snapshot.processes if _container_matches(process.container, flt)
    }
    namespaces = {
        namespace.inode
        for namespace in snapshot.namespaces
        if _container_matches(namespace.container, flt)
    }
    return pids, namespaces


def _socket_matches(sock: Socket, flt: SocketFilter, owners: set[int] | None) -> bool:
    if flt.states and sock.state not in flt.states:
        return False
    if flt.families and sock.family not in flt.families:
        return False
    if flt.ports and sock.local.port not in flt.ports and sock.remote.port not in flt.ports:
        return False
    if flt.local and not _address_in(sock.local.address, flt.local):
        return False
    if flt.remote and not _address_in(sock.remote.address, flt.remote):
        return False
    return owners is None or any(pid in owners for pid in sock.pids)


def apply_filter(snapshot: Snapshot, flt: SocketFilter) -> Snapshot:
    """The snapshot with only the matching sockets, and only the processes holding them (plus,
    with --pid/--process, the matching processes themselves). Host facts, sysctls and counters
    stay: they describe the host, not a socket."""
    if not flt.active:
        return snapshot
    owners = _matching_pids(snapshot, flt) if flt.selects_owners else None
    sockets = tuple(sock for sock in snapshot.sockets if _socket_matches(sock, flt, owners))
    namespaces = snapshot.namespaces
    if flt.containers or flt.pods:
        # A socket of the container: held by one of its processes, or (nobody holding it) in
        # the namespace that belongs to it.
        placed_pids, placed_namespaces = _placed(snapshot, flt)
        sockets = tuple(
            sock
            for sock in sockets
            if any(pid in placed_pids for pid in sock.pids)
            or (not sock.pids and sock.netns in placed_namespaces)
        )
        seen = {sock.netns for sock in sockets} | placed_namespaces
        namespaces = tuple(namespace for namespace in namespaces if namespace.inode in seen)
        owners = placed_pids if owners is None else owners & placed_pids
    keep = {pid for sock in sockets for pid in sock.pids}
    if owners is not None:
        keep |= owners
    processes = tuple(process for process in snapshot.processes if process.pid in keep)
    return replace(snapshot, sockets=sockets, processes=processes, namespaces=namespaces)


def namespace_names(namespace: NetNamespace) -> tuple[str, ...]:
    """Every word that names ``namespace`` for --netns: its label, its ``ip netns`` names, its
    inode (also as ``net:[INODE]``) and the path that enters it."""
    words = [namespace.label, *namespace.names, str(namespace.inode), f"net:[{namespace.inode}]"]
    if namespace.enter:
        words.append(namespace.enter)
    if namespace.container is not None and namespace.container.pod:
        words.append(namespace.container.pod)
    return tuple(words)


def select_namespace(snapshot: Snapshot, name: str) -> Snapshot | None:
    """The part of a snapshot of several namespaces that is in the one ``name`` names (see
    :func:`namespace_names`), with its own sysctls and counters; None when none is named so."""
    for namespace in snapshot.namespaces:
        if name in namespace_names(namespace):
            sockets = tuple(sock for sock in snapshot.sockets if sock.netns == namespace.inode)
            holders = {pid for sock in sockets for pid in sock.pids}
            return replace(
                snapshot,
                sockets=sockets,
                processes=tuple(p for p in snapshot.processes if p.pid in holders),
                namespaces=(namespace,),
                sysctls=namespace.sysctls,
                counters=namespace.counters,
            )
    return None


def saved_selection(snapshot: Snapshot, flt: SocketFilter) -> Snapshot:
    """What ``tcphealth snapshot`` writes under a filter: the matching sockets, with a note that
    says so -- a replay of it must not read as the whole, quiet host."""
    if not flt.active:
        return snapshot
    note = (
        f"saved with filters ({as_options(flt)}): only the sockets they matched are in this "
        "snapshot, so the diagnosis of it sees part of the host, not all of it"
    )
    narrowed = apply_filter(snapshot, flt)
    return replace(narrowed, notes=(*notes_for_selection(narrowed, flt.describe()), note))


def notes_for_selection(snapshot: Snapshot, filters: tuple[str, ...]) -> tuple[str, ...]:
    """The snapshot's notes, with the collector's count of sockets no visible process holds
    made again for the sockets a filter kept: a note about a socket the user filtered out
    would be about something the report does not show."""
    whole = unseen_owner_note(snapshot.attribution.sockets_unseen)
    if not filters or whole not in snapshot.notes:
        return snapshot.notes
    shown = sum(1 for sock in snapshot.sockets if sock.owner_source is OwnerSource.UNSEEN)
    mine = (unseen_owner_note(shown),) if shown else ()
    return tuple(kept for note in snapshot.notes for kept in (mine if note == whole else (note,)))


def selection_is_empty(snapshot: Snapshot, narrowed: Snapshot, flt: SocketFilter) -> bool:
    """The filter matched nothing: no socket, and (for --pid/--process) no process either.
    Not a healthy host -- a check written with a typo (``--process javaa``) must not pass."""
    if not flt.active or narrowed.sockets:
        return False
    return not (flt.selects_owners and _matching_pids(snapshot, flt))


def as_options(flt: SocketFilter) -> str:
    """The criteria as the command-line options that give them (``--process javaa``), in the
    order of :meth:`SocketFilter.describe`."""
    words: list[str] = []
    for word in flt.describe():
        key, _, values = word.partition("=")
        if key == "family":
            words.extend(
                "-4" if value == Family.IPV4.value else "-6" for value in values.split(",")
            )
        elif key == "process":
            words.extend(f"--process {glob}" for glob in flt.processes)
        else:
            words.extend(f"--{key} {value}" for value in values.split(","))
    return " ".join(words)


def finding_pids(finding: Finding) -> tuple[int, ...]:
    """Every pid a finding is about."""
    return finding.subject.pids


class _Relation:
    """Which sockets of a snapshot a finding is about, from its state and its subject.

    A finding is about the sockets in its state (any state, for a finding about a listener as
    a whole or about no state) that its subject names. A subject with an address is about the
    sockets on it -- the listener's local port (with clients on this host connecting to it) or
    the peer's remote address -- and nothing else: its pids say who owns or uses that place,
    not that every other socket of theirs belongs to it (a process listening on two ports with
    trouble on one). A subject with pids and no address is about the sockets those pids hold;
    one that names neither is about every socket in its state. Local addresses are those any
    socket of the snapshot is bound to, so a client of a local listener is told from a client
    of a remote one on the same port."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.local_addresses = {sock.local.address for sock in snapshot.sockets}

    def _is_local(self, address: IPAddress) -> bool:
        return address.is_loopback or address in self.local_addresses

    def about(self, finding: Finding, sock: Socket) -> bool:
        return self.test(finding)(sock)

    def test(self, finding: Finding) -> Callable[[Socket], bool]:
        """The test of "is ``sock`` one this finding is about", worked out once per finding:
        it runs on every socket of a large host."""
        subject = finding.subject
        state = finding.state
        if subject.kind is SubjectKind.LISTENER and state is TcpState.LISTEN:
            state = None  # a finding about a listener as a whole: every state on it
        pids = frozenset(finding_pids(finding))
        address = subject.address
        listener = subject.kind is SubjectKind.LISTENER
        is_local = self._is_local

        def test(sock: Socket) -> bool:
            if state is not None and sock.state is not state:
                return False
            if address is None:
                return not pids or not pids.isdisjoint(sock.pids)
            if listener:
                return _on_listener(sock.local, address) or (
                    _on_listener(sock.remote, address) and is_local(sock.remote.address)
                )
            return _same_place(sock.remote, address)

        return test


def _on_listener(endpoint: Endpoint, listener: Endpoint) -> bool:
    if endpoint.port != listener.port:
        return False
    return listener.address.is_unspecified or endpoint.address == listener.address


def _same_place(endpoint: Endpoint, address: Endpoint) -> bool:
    if endpoint.address != address.address:
        return False
    return address.port is None or endpoint.port == address.port


def select_findings(
    findings: Iterable[Finding], flt: SocketFilter, snapshot: Snapshot, narrowed: Snapshot
) -> list[Finding]:
    """The findings of the whole ``snapshot`` that the filter's selection (``narrowed``) shows.

    The diagnosis always sees the whole host, so a finding shown under a filter is the very
    finding an unfiltered run makes (same code, severity, blame, subject and evidence); the
    filter only chooses which are shown. A finding is shown when one of the sockets it is
    about (:class:`_Relation`) was selected, or when --pid/--process selected a process it is
    about and no criterion on the sockets (state, port, address, family) says otherwise.
    When some of its sockets lie outside the selection, ``outside_filter`` says how many, so
    that a narrowed view never hides that the cause reaches further."""
    if not flt.active:
        return list(findings)
    relation = _Relation(snapshot)
    selected_ids = {id(sock) for sock in narrowed.sockets}
    owners = _matching_pids(snapshot, flt) if flt.selects_owners else set()
    # Each finding looks only at the sockets of its state (all, for a listener as a whole).
    by_state: dict[TcpState, list[Socket]] = {}
    for sock in snapshot.sockets:
        by_state.setdefault(sock.state, []).append(sock)
    shown: list[Finding] = []
    for finding in findings:
        if _about_no_socket_now(finding):
            # Counters of the whole host with no socket of its own (count 0): a warning or
            # worse is a limit the host is at, which touches the selection too; information
            # about the past since boot is about no socket shown, so a filter leaves it out.
            if finding.severity >= Severity.WARNING:
                shown.append(finding)
            continue
        whole_listener = finding.subject.kind is SubjectKind.LISTENER and finding.state in (
            None,
            TcpState.LISTEN,
        )
        candidates = (
            snapshot.sockets
            if finding.state is None or whole_listener
            else by_state.get(finding.state, ())
        )
        about = list(filter(relation.test(finding), candidates))
        inside = sum(1 for sock in about if id(sock) in selected_ids)
        # A selected process brings its findings along by itself only where nothing else
        # narrows: `--pid X --port P` asks about X's sockets on P, so a finding about X's
        # sockets elsewhere stays out -- unless it is about no socket at all, which no socket
        # criterion can place.
        by_process = (not flt.selects_sockets or not about) and any(
            pid in owners for pid in finding_pids(finding)
        )
        if not inside and not by_process:
            continue
        outside = len(about) - inside
        if outside:
            note = (
                f"{outside:,} of the {len(about):,} sockets it concerns lie outside the filter "
                f"({as_options(flt)}): judged on the whole host"
            )
            finding = replace(finding, outside_filter=(*finding.outside_filter, note))
        shown.append(finding)
    return shown


def _about_no_socket_now(finding: Finding) -> bool:
    return finding.subject.kind is SubjectKind.HOST and finding.count == 0 and not finding.state


def _port_runs(ports: frozenset[int]) -> list[str]:
    """``8000-8100`` for a run of ports (a range given with --port), ``22`` for one alone."""
    runs: list[list[int]] = []
    for port in sorted(ports):
        if runs and port == runs[-1][1] + 1:
            runs[-1][1] = port
        else:
            runs.append([port, port])
    return [f"{low}" if low == high else f"{low}-{high}" for low, high in runs]
