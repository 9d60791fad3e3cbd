"""One pass over a snapshot's sockets, building the lookups every rule needs.

A host can hold 300,000 sockets. Every rule works on the groups built here (sockets by state,
listeners by port, processes by pid) so the whole diagnosis stays linear: no rule ever scans
all sockets again for each socket it looks at.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from tcphealth.diagnose.timeline import Age, ConnectionKey, connection_key
from tcphealth.model import (
    Endpoint,
    IPAddress,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    TcpState,
)

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    import numpy as np
    import numpy.typing as npt

    from tcphealth.columnar import SocketTable

_ESTABLISHED_CODE = 1  # the kernel's TCP_ESTABLISHED

# A destination as TCP sees it for port allocation: the remote endpoint, its address
# normalised (a v4-mapped IPv6 address turned back into IPv4). An Endpoint rather than an
# (address, port) tuple: rules count sockets per destination, and an Endpoint hashes without
# ipaddress's slow __hash__ -- usually it is the socket's own remote endpoint, unchanged.
Destination = Endpoint


def plain_address(address: IPAddress) -> IPAddress:
    """The address with a v4-mapped IPv6 address (``::ffff:10.0.0.1``) turned back into IPv4.

    A dual-stack listener reports its IPv4 clients as v4-mapped; comparing them with IPv4
    addresses elsewhere needs one spelling.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# A label a reporter puts where part of an address was: XX, x, *, ?, or nothing ("...").
_MASK_LABEL = re.compile(r"^(?:[xX]+|\*+|\?+|)$")
_LABEL_SEPARATORS = re.compile(r"[.:-]")


def hides_host(name: str | None) -> bool:
    """Whether a name a paste printed in place of an address stands for no one known host: a
    mask (``XX.XX.XX.XX``, ``192.x.x.x``, ``ip-10-X-X-XXX.ec2.internal``, ``...``), a
    placeholder (``<server 1>``, ``$SERVER``, ``%HOST%``, ``{ip}``) or a name netstat cut short
    (``yahoo.``). Such a name may stand for several hosts, so nothing that needs the one real
    address can rest on it. A whole host name (netstat without -n, ``db1.example.com``,
    ``localhost``) names one host."""
    if name is None:
        return False
    if name.startswith(("<", "$", "%", "{")) or name.endswith("."):
        return True  # a typed placeholder (a tag, a shell or template variable) or a cut name
    return any(_MASK_LABEL.match(label) for label in _LABEL_SEPARATORS.split(name))


def destination(endpoint: Endpoint) -> Destination:
    address = endpoint.address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return Endpoint(address.ipv4_mapped, endpoint.port)
    return endpoint


def owned_by_fd(sock: Socket) -> bool:
    """A process holds a file descriptor to this socket, and we know which."""
    return sock.owner_source is OwnerSource.FD and bool(sock.pids)


def never_accepted(sock: Socket) -> bool:
    """No descriptor holds the socket, so it cannot have been accepted (KERNEL.md: inode 0).

    ``LISTENER`` means the collector already credited it to the listener on its port; ``NONE``
    means the source looked for owners and found none.
    """
    if sock.owner_source in (OwnerSource.LISTENER, OwnerSource.NONE):
        return True
    return sock.inode == 0


@dataclass
class SnapshotIndex:
    """Lookups over one snapshot. Built once by :meth:`build`; rules only read it."""

    snapshot: Snapshot
    processes: dict[int, Process] = field(default_factory=dict)
    by_state: dict[TcpState, list[Socket]] = field(default_factory=dict)
    listeners_by_port: dict[int, list[Socket]] = field(default_factory=dict)
    # Addresses this host answers on, as seen in its own sockets' local side.
    local_addresses: set[IPAddress] = field(default_factory=set)
    sockets_per_pid: Counter[int] = field(default_factory=Counter)
    # Which pids hold ESTABLISHED connections to each destination: see established_pids().
    _established_by_destination: dict[Destination, Counter[int]] | None = None
    # Sockets per state that have a descriptor no readable process holds: see unseen_in().
    _unseen_by_state: dict[TcpState, int] = field(default_factory=dict)
    # Connections that belong to a listener here but were never accepted, keyed by
    # ``id(listener)`` (:attr:`listener_by_id` gives the listener back): half-open SYN_RECV,
    # and CLOSE_WAIT that no descriptor holds. Those whose listener is not in the snapshot
    # are kept apart rather than guessed at.
    listener_by_id: dict[int, Socket] = field(default_factory=dict)
    syn_recv_by_listener: dict[int, list[Socket]] = field(default_factory=dict)
    syn_recv_without_listener: list[Socket] = field(default_factory=list)
    unaccepted_close_wait_by_listener: dict[int, list[Socket]] = field(default_factory=dict)
    unaccepted_close_wait_without_listener: list[Socket] = field(default_factory=list)
    unaccepted_close_wait_ids: set[int] = field(default_factory=set)
    # The sockets of one state by the client side of their connection: see by_client_end().
    # One state's at a time: each rule asks about one state.
    _by_client_end: tuple[TcpState, dict[Endpoint, Socket | list[Socket]]] | None = None
    # The sockets of a state by each pid holding them: see held_by().
    _held_by: dict[TcpState, dict[int, list[Socket]]] = field(default_factory=dict)
    # Each socket's age in its state as a series of samples saw it (None: one look). Read by
    # the few rules whose verdict on a handful of sockets rests on their age alone.
    series_ages: Mapping[ConnectionKey, Age] | None = None
    # Every socket as columns, where the index was built from a table (build_table): the
    # snapshot then lists as objects only the sockets of the states not in ``_lazy``; the
    # others are made objects from the table when a rule first asks for them.
    table: SocketTable | None = None
    _lazy: dict[TcpState, int] = field(default_factory=dict)  # state -> its kernel code
    # The table's rows already made objects (row -> object): a row is made once, so that a
    # rule comparing objects by identity (unaccepted_close_wait_ids) meets the same one.
    _made: dict[int, Socket] = field(default_factory=dict)
    # The states that were lazy when the index was built (made objects since or not): their
    # table checks read the columns, with the objects made through objects_at.
    table_states: Mapping[TcpState, int] = field(default_factory=dict)  # state -> its code
    # The CLOSE_WAIT rows the index credited to a listener as never accepted, where
    # CLOSE_WAIT is a lazy state (their objects' ids are in unaccepted_close_wait_ids).
    unaccepted_close_wait_rows: list[int] = field(default_factory=list)

    def observed_seconds(self, sock: Socket) -> float | None:
        """How long the series saw ``sock`` in its state (None: one look, or not seen)."""
        if self.series_ages is None:
            return None
        age = self.series_ages.get(connection_key(sock))
        return None if age is None else age.observed_seconds

    @classmethod
    def build(cls, snapshot: Snapshot) -> SnapshotIndex:
        index = cls(snapshot=snapshot)
        index.processes = {process.pid: process for process in snapshot.processes}
        # The one pass over every socket does as little as it can per socket: it counts what
        # repeats (address objects, pid tuples, remote endpoints) and works each distinct
        # value out once afterwards. Sources share these objects between sockets, so there
        # are a few thousand distinct ones among 300,000 sockets.
        by_state: dict[TcpState, list[Socket]] = {state: [] for state in TcpState}
        listeners: defaultdict[int, list[Socket]] = defaultdict(list)
        # Keyed by identity: every object is alive (the snapshot holds it) during the pass.
        local_address_by_id: dict[int, IPAddress] = {}
        holders: dict[tuple[int, ...], int] = {}  # pid tuple -> sockets it holds
        listen = TcpState.LISTEN
        for sock in snapshot.sockets:
            state = sock.state
            by_state[state].append(sock)
            address = sock.local.address
            if id(address) not in local_address_by_id:
                local_address_by_id[id(address)] = address
            pids = sock.pids
            if pids:
                holders[pids] = holders.get(pids, 0) + 1
            if state is listen and sock.local.port is not None:
                listeners[sock.local.port].append(sock)

        for address in local_address_by_id.values():
            local = plain_address(address)
            if not local.is_unspecified:
                index.local_addresses.add(local)
        for pids, count in holders.items():
            for pid in pids:
                index.sockets_per_pid[pid] += count
        index.by_state = {state: found for state, found in by_state.items() if found}
        index.listeners_by_port = dict(listeners)
        index._attach_to_listeners()
        return index

    def _attach_to_listeners(self) -> None:
        """Credit SYN_RECV and never-accepted CLOSE_WAIT to the listener on their local port.

        Runs after the main pass (the listeners must be known first) and looks only at those
        two states, each socket once, with a dict lookup: still linear.
        """
        syn_recv: defaultdict[int, list[Socket]] = defaultdict(list)
        for sock in self.sockets(TcpState.SYN_RECV):
            listener = self.listener_for(sock.local)
            if listener is None:
                self.syn_recv_without_listener.append(sock)
            else:
                self.listener_by_id[id(listener)] = listener
                syn_recv[id(listener)].append(sock)
        self.syn_recv_by_listener = dict(syn_recv)
        self._attach_close_wait(self.sockets(TcpState.CLOSE_WAIT))

    def _attach_close_wait(self, close_wait: Iterable[Socket]) -> None:
        """The CLOSE_WAIT half of :meth:`_attach_to_listeners`, over ``close_wait`` (every
        CLOSE_WAIT socket, or at least those no descriptor is known to hold), in order."""
        self.unaccepted_close_wait_without_listener = []
        self.unaccepted_close_wait_ids = set()
        unaccepted: defaultdict[int, list[Socket]] = defaultdict(list)
        for sock in close_wait:
            if owned_by_fd(sock) or not never_accepted(sock):
                continue
            listener = self.listener_for(sock.local)
            if listener is None:
                self.unaccepted_close_wait_without_listener.append(sock)
            else:
                self.listener_by_id[id(listener)] = listener
                unaccepted[id(listener)].append(sock)
                self.unaccepted_close_wait_ids.add(id(sock))
        self.unaccepted_close_wait_by_listener = dict(unaccepted)

    def established_pids(self, dest: Destination) -> Counter[int] | None:
        """Which pids hold ESTABLISHED connections to ``dest``, and how many each: names the
        likely client behind TIME_WAIT toward it (TIME_WAIT itself has no owner). Worked out
        for every destination the first time it is asked -- rarely: only for a finding."""
        if self._established_by_destination is None and self.table is not None:
            self._established_by_destination = self._established_by_destination_of_table()
        if self._established_by_destination is None:
            by_destination: defaultdict[Destination, Counter[int]] = defaultdict(Counter)
            for sock in self.sockets(TcpState.ESTABLISHED):
                if sock.pids:
                    by_destination[destination(sock.remote)].update(sock.pids)
            self._established_by_destination = dict(by_destination)
        return self._established_by_destination.get(dest)

    def _established_by_destination_of_table(self) -> dict[Destination, Counter[int]]:
        """:meth:`established_pids`'s map over the table: each (holders, destination) once."""
        import numpy as np

        from tcphealth.columnar import AddressTable, distinct_rows_first

        assert self.table is not None
        table, columns = self.table, self.table.columns
        rows = np.flatnonzero(columns.state == _ESTABLISHED_CODE)
        addresses = AddressTable()
        values, counts, first = distinct_rows_first(
            [
                table.holders[rows],
                columns.family[rows],
                columns.dst_high[rows],
                columns.dst_low[rows],
                columns.dport[rows],
            ]
        )
        found: defaultdict[Destination, Counter[int]] = defaultdict(Counter)
        for at in sorted(range(len(counts)), key=first.__getitem__):
            holder, kind, high, low, port = (value[at] for value in values)
            pids = table.groups[holder]
            if pids:
                remote = Endpoint(addresses.get(kind, high, low), port)
                counter = found[destination(remote)]
                for pid in pids:
                    counter[pid] += counts[at]
        return dict(found)

    def sockets(self, state: TcpState) -> list[Socket]:
        if self._lazy and state in self._lazy:
            self._materialise(state)
        return self.by_state.get(state, [])

    def _materialise(self, state: TcpState) -> None:
        """Make the table's rows in ``state`` objects, in their order (a rule without a table
        check asked for them)."""
        import numpy as np

        assert self.table is not None
        code = self._lazy.pop(state)
        rows = np.flatnonzero(self.table.columns.state == code)
        if len(rows):
            self.by_state[state] = self.objects_at(rows)

    def reads_table(self, table: SocketTable, *states: TcpState) -> bool:
        """Whether this index was built from ``table`` with ``states`` lazy: a table check
        may then count those states over the columns and make objects with objects_at."""
        return self.table is table and all(state in self.table_states for state in states)

    def objects_at(self, rows: npt.NDArray[np.intp]) -> list[Socket]:
        """The table's ``rows`` as objects, in that order: each row made once (the same
        object whoever asks again)."""
        assert self.table is not None
        made = self._made
        new = [row for row in rows.tolist() if row not in made]
        if new:
            import numpy as np

            for row, sock in zip(
                new, self.table.sockets(np.asarray(new, dtype=np.intp)), strict=True
            ):
                made[row] = sock
        return [made[row] for row in rows.tolist()]

    @classmethod
    def build_table(
        cls, snapshot: Snapshot, table: SocketTable, lazy: Sequence[int]
    ) -> SnapshotIndex:
        """The index of a snapshot whose sockets are ``table``'s rows: the snapshot lists as
        objects the sockets of every state but the kernel codes in ``lazy``; those states'
        are made objects only if a rule asks for them (rules with a table check count over
        the columns instead). Every lookup the same as :meth:`build` of the whole snapshot
        (tests/test_lean_pipeline.py)."""
        import numpy as np

        from tcphealth.columnar import STATE_OF_CODE, AddressTable, distinct_rows

        index = cls.build(snapshot)
        index.table = table
        index._lazy = {STATE_OF_CODE[code]: code for code in lazy}
        index.table_states = dict(index._lazy)
        columns = table.columns
        close_wait = index._lazy.get(TcpState.CLOSE_WAIT)
        if close_wait is not None:
            # _attach_to_listeners over the CLOSE_WAIT rows it can credit: those no
            # descriptor is known to hold (made objects; a few, unless owners are unknown).
            from tcphealth.columnar import OWNER_SOURCES

            held = (table.sources == OWNER_SOURCES.index(OwnerSource.FD)) & table.named()[
                table.holders
            ]
            rows = np.flatnonzero((columns.state == close_wait) & ~held)
            index._attach_close_wait(index.objects_at(rows))
            unaccepted = index.unaccepted_close_wait_ids
            index.unaccepted_close_wait_rows = [
                row for row in rows.tolist() if id(index._made[row]) in unaccepted
            ]
        # What build() counts over every socket, over the columns: local addresses and
        # sockets per pid.
        addresses = AddressTable()
        (kinds, highs, lows), _ = distinct_rows([columns.family, columns.src_high, columns.src_low])
        index.local_addresses = set()
        for kind, high, low in zip(kinds, highs, lows, strict=True):
            local = plain_address(addresses.get(kind, high, low))
            if not local.is_unspecified:
                index.local_addresses.add(local)
        index.sockets_per_pid = Counter()
        for group, count in enumerate(
            np.bincount(table.holders, minlength=len(table.groups)).tolist()
        ):
            for pid in table.groups[group] if count else ():
                index.sockets_per_pid[pid] += count
        return index

    def client_end(self, local: Endpoint, remote: Endpoint) -> Endpoint:
        """Of a connection's two ends, the one that is no listening port here: the client's,
        unique to the connection where the server's is shared by all its clients."""
        return remote if local.port in self.listeners_by_port else local

    def by_client_end(self, state: TcpState) -> dict[Endpoint, Socket | list[Socket]]:
        """The sockets in ``state`` by :meth:`client_end` (a list where several share one:
        the same connection in several network namespaces, or one to a port no longer
        listened on). Built when a rule first asks about ``state`` -- a rule looking for the
        local peers of each of its findings would otherwise pass over every socket in that
        state once per finding -- and kept until one asks about another state. It holds only
        references to the sockets and endpoints already there: 40 bytes per socket."""
        if self._by_client_end is not None and self._by_client_end[0] is state:
            return self._by_client_end[1]
        self._by_client_end = None  # the last state's map goes before this one is built
        found: dict[Endpoint, Socket | list[Socket]] = {}
        remember = found.setdefault
        listening = self.listeners_by_port
        for sock in self.sockets(state):
            if not sock.pids:
                continue
            local = sock.local
            key = sock.remote if local.port in listening else local
            known = remember(key, sock)
            if known is not sock:
                if isinstance(known, list):
                    known.append(sock)
                else:
                    found[key] = [known, sock]
        self._by_client_end = (state, found)
        return found

    def held_by(self, state: TcpState) -> dict[int, list[Socket]]:
        """The sockets in ``state`` by each pid that holds them (a socket several pids share is
        under each). Built the first time a rule asks about ``state``, so a rule that wants
        one holder's sockets of another state for each of its findings looks them up instead
        of passing over the whole state once per finding."""
        found = self._held_by.get(state)
        if found is None:
            found = {}
            by_tuple: dict[tuple[int, ...], list[Socket]] = {}
            for sock in self.sockets(state):
                pids = sock.pids
                if pids:
                    same = by_tuple.get(pids)
                    if same is None:
                        by_tuple[pids] = [sock]
                    else:
                        same.append(sock)
            for pids, sockets in by_tuple.items():  # sources share one tuple per holder
                for pid in set(pids):
                    found.setdefault(pid, []).extend(sockets)
            self._held_by[state] = found
        return found

    def unseen_in(self, state: TcpState) -> int:
        """How many sockets in ``state`` have a descriptor that no process we could read
        holds. Counted once per state, when a finding first asks."""
        count = self._unseen_by_state.get(state)
        if count is None and self.table is not None and state in self._lazy:
            import numpy as np

            from tcphealth.columnar import OWNER_SOURCES

            code = OWNER_SOURCES.index(OwnerSource.UNSEEN)
            table = self.table
            in_state = table.columns.state == self._lazy[state]
            count = int(np.count_nonzero(in_state & (table.sources == code)))
            self._unseen_by_state[state] = count
        if count is None:
            unseen = OwnerSource.UNSEEN
            count = sum(1 for sock in self.sockets(state) if sock.owner_source is unseen)
            self._unseen_by_state[state] = count
        return count

    def listener_for(self, endpoint: Endpoint) -> Socket | None:
        """The listener that accepts connections arriving at ``endpoint``, if it is here.

        A listener bound to that very address wins over a wildcard one (that is how the
        kernel picks too); among wildcards, one of the endpoint's own address family (``::``
        for a v4-mapped peer of a dual-stack listener) wins over the other. With several equal
        candidates (SO_REUSEPORT) the first listed is taken, so the answer is stable.
        """
        if endpoint.port is None:
            return None
        candidates = self.listeners_by_port.get(endpoint.port)
        if not candidates:
            return None
        wanted = plain_address(endpoint.address)
        same_family_wildcard: Socket | None = None
        other_wildcard: Socket | None = None
        for listener in candidates:
            bound = listener.local.address
            if plain_address(bound) == wanted:
                return listener
            if not bound.is_unspecified:
                continue
            if bound.version == endpoint.address.version:
                same_family_wildcard = same_family_wildcard or listener
            else:
                other_wildcard = other_wildcard or listener
        return same_family_wildcard or other_wildcard

    def is_local(self, address: IPAddress) -> bool:
        """The address belongs to this host: loopback, or the local side of one of its sockets."""
        plain = plain_address(address)
        return plain.is_loopback or plain in self.local_addresses

    def process(self, pid: int | None) -> Process | None:
        return None if pid is None else self.processes.get(pid)

    def process_name(self, pid: int | None) -> str | None:
        process = self.process(pid)
        return None if process is None else process.name


class TableRows(Sequence[Socket]):
    """Rows of an index's table as a sequence of sockets, made objects only once read: what
    a table check hands to object code that reads its sockets on some paths only (a count
    below a threshold, a paste's listings). Its length needs no object."""

    def __init__(self, index: SnapshotIndex, rows: npt.NDArray[np.intp]) -> None:
        self._index = index
        self._rows = rows
        self._objects: list[Socket] | None = None

    def _made(self) -> list[Socket]:
        if self._objects is None:
            self._objects = self._index.objects_at(self._rows)
        return self._objects

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, at: int) -> Socket: ...

    @overload
    def __getitem__(self, at: slice) -> Sequence[Socket]: ...

    def __getitem__(self, at: int | slice) -> Socket | Sequence[Socket]:
        return self._made()[at]

    def __iter__(self) -> Iterator[Socket]:
        return iter(self._made())
