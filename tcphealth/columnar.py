"""Sockets as columns: the model's other shape, for counting over the bulk of a host's sockets.

:class:`DumpColumns` holds one numpy array per field of the kernel's socket dump, one row per
socket (:mod:`tcphealth.sources.columns` decodes it); :class:`SocketTable` adds who holds each
row. Readers count over these arrays where a :class:`~tcphealth.model.Socket` per socket
would cost a Python object and a Python loop step each (benchmarks/RESULTS.md, session 13).
The values are the kernel's raw ones (state and timer codes); :data:`STATE_OF_CODE` gives
their meaning as the model's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from tcphealth.model import (
    ENDPOINT_SLOTS_OF,
    TCP_INFO_SLOTS_OF,
    Endpoint,
    Family,
    IPAddress,
    OwnerSource,
    Socket,
    SocketDraft,
    TcpInfo,
    TcpState,
    TimerKind,
    state_from_kernel_code,
    timer_from_kernel_code,
)

# Kernel state code -> the model's state (one byte: looked up by index).
STATE_OF_CODE: tuple[TcpState, ...] = tuple(state_from_kernel_code(code) for code in range(256))
_TIMER_OF_CODE: tuple[TimerKind, ...] = tuple(timer_from_kernel_code(code) for code in range(256))
# The tcp_info columns, in the order of the netlink decoder's TCP_INFO_FIELDS (which
# sources.columns checks on import): sockets_at reads them in this order.
INFO_NAMES = (
    "retransmits",
    "probes",
    "backoff",
    "rto_us",
    "unacked",
    "last_data_sent_ms",
    "last_data_recv_ms",
    "last_ack_recv_ms",
    "rtt_us",
    "total_retrans",
    "busy_time_us",
    "rwnd_limited_us",
    "sndbuf_limited_us",
)
# How a row's owners are known (SocketTable.sources holds positions in this tuple).
OWNER_SOURCES: tuple[OwnerSource, ...] = tuple(OwnerSource)


@dataclass(frozen=True)
class DumpColumns:
    """Every socket of a dump, one row each, in the dump's order. Addresses are integers in
    two halves (``*_high``, ``*_low``: the 16 bytes of ``idiag_src``/``idiag_dst`` read
    big-endian; an IPv4 address is the top 32 bits of ``*_high``). The tcp_info columns hold 0
    where ``has_info`` is False; ``shutdown`` and ``drops`` hold -1 where the message had none.
    """

    family: npt.NDArray[np.uint8]
    state: npt.NDArray[np.uint8]
    timer: npt.NDArray[np.uint8]
    retrans: npt.NDArray[np.uint8]
    sport: npt.NDArray[np.uint32]
    dport: npt.NDArray[np.uint32]
    src_high: npt.NDArray[np.uint64]
    src_low: npt.NDArray[np.uint64]
    dst_high: npt.NDArray[np.uint64]
    dst_low: npt.NDArray[np.uint64]
    cookie: npt.NDArray[np.uint64]
    expires: npt.NDArray[np.uint32]
    rqueue: npt.NDArray[np.uint32]
    wqueue: npt.NDArray[np.uint32]
    uid: npt.NDArray[np.uint32]
    inode: npt.NDArray[np.uint32]
    has_info: npt.NDArray[np.bool_]
    # tcp_info, the fields of netlink.TCP_INFO_FIELDS by their TcpInfo names
    retransmits: npt.NDArray[np.uint8]
    probes: npt.NDArray[np.uint8]
    backoff: npt.NDArray[np.uint8]
    rto_us: npt.NDArray[np.uint32]
    unacked: npt.NDArray[np.uint32]
    last_data_sent_ms: npt.NDArray[np.uint32]
    last_data_recv_ms: npt.NDArray[np.uint32]
    last_ack_recv_ms: npt.NDArray[np.uint32]
    rtt_us: npt.NDArray[np.uint32]
    total_retrans: npt.NDArray[np.uint32]
    busy_time_us: npt.NDArray[np.uint64]
    rwnd_limited_us: npt.NDArray[np.uint64]
    sndbuf_limited_us: npt.NDArray[np.uint64]
    shutdown: npt.NDArray[np.int16]
    drops: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.state)

    def ends_at(self, rows: npt.NDArray[np.intp]) -> list[npt.NDArray[np.generic]]:
        """What keys a connection's two ends but the local port, at ``rows``: family, local
        address (two halves), remote address (two halves), remote port -- in that order."""
        return [
            self.family[rows],
            self.src_high[rows],
            self.src_low[rows],
            self.dst_high[rows],
            self.dst_low[rows],
            self.dport[rows],
        ]


COLUMN_NAMES = tuple(field.name for field in fields(DumpColumns))


@dataclass(frozen=True)
class SocketTable:
    """Every socket of a snapshot as columns, with its holders: ``groups[holders[row]]`` are
    the pids holding that row's socket (``groups[0]`` is ``()``: none known), after the same
    listener credit and second look as the object path."""

    columns: DumpColumns
    holders: npt.NDArray[np.uint32]
    groups: list[tuple[int, ...]]
    sources: npt.NDArray[np.uint8]  # how each row's holders are known: OWNER_SOURCES[...]
    netns: int | None = None  # the network namespace every row is in, where it is noted

    def __len__(self) -> int:
        return len(self.columns)

    def named(self) -> npt.NDArray[np.bool_]:
        """Per holder group, whether it names any pid (index it with ``holders``)."""
        return np.array([bool(pids) for pids in self.groups], dtype=np.bool_)

    def sockets(self, rows: npt.NDArray[np.intp]) -> list[Socket]:
        """The given rows as sockets, their owners set: for the few a rule or a finding
        needs as objects."""
        drafts = sockets_at(self.columns, rows)
        groups, sources = self.groups, OWNER_SOURCES
        if self.netns is not None:
            for draft in drafts:
                draft.netns = self.netns
        return [
            draft.finish(groups[holder], sources[source])
            for draft, holder, source in zip(
                drafts, self.holders[rows].tolist(), self.sources[rows].tolist(), strict=True
            )
        ]


class AddressTable:
    """Addresses as the model's objects, one per distinct value: a host has few of its own and
    its peers repeat."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int, int], IPAddress] = {}

    def get(self, family: int, high: int, low: int) -> IPAddress:
        key = (family, high, low)
        found = self._known.get(key)
        if found is None:
            if family == 2:  # AF_INET
                found = ipaddress.IPv4Address(high >> 32)
            else:
                found = ipaddress.IPv6Address((high << 64) | low)
            self._known[key] = found
        return found


def lexsorted_runs(
    keys: list[npt.NDArray[np.generic]],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """The rows sorted by ``keys`` (equal-length columns, at least one row; in np.lexsort's
    order: the last key the primary one) and, in that order, where each run of rows equal in
    every key starts. Stable: within a run the rows keep their order."""
    packed = _packed(keys)
    compared: list[npt.NDArray[np.generic]] = keys if packed is None else list(packed)
    if packed is None:
        order = np.lexsort(keys)
    elif len(packed) == 1:
        key = packed[0]
        row_bits = len(key).bit_length()
        if int(key.max()).bit_length() + row_bits <= 64:
            # The row number in the low bits: every value distinct, so a plain sort of the
            # values (no index to carry, not stable) gives the stable order, 3x faster.
            ordered = np.sort((key << np.uint64(row_bits)) | np.arange(len(key), dtype=np.uint64))
            order = (ordered & np.uint64((1 << row_bits) - 1)).astype(np.intp)
            key_ordered = ordered >> np.uint64(row_bits)
            starts = np.empty(len(order), dtype=np.bool_)
            starts[0] = True
            np.not_equal(key_ordered[1:], key_ordered[:-1], out=starts[1:])
            return order, starts
        order = np.argsort(key, kind="stable")
    else:
        order = np.lexsort(packed)
    starts = np.zeros(len(order), dtype=np.bool_)
    starts[0] = True
    for column in compared:
        ordered = column[order]
        starts[1:] |= ordered[1:] != ordered[:-1]
    return order, starts


def _packed(keys: list[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.uint64]] | None:
    """The same sort keys in fewer columns (np.lexsort's order: the last the primary one):
    each key made ``(value - its least) >> the zero bits at the end of every such value``
    -- which keeps its order and which values are equal -- and adjacent keys then put side
    by side in one 64-bit integer while their widths fit, the more significant one in the
    higher bits; a key with one value throughout is left out. Sorting these (stably) gives
    np.lexsort's order of ``keys``, and rows equal in these are equal in ``keys``. A lexsort
    costs a stable sort per key: the loopback's seven-column connection keys (family, both
    addresses' halves, both ports) fit in one. None: a key that is not integers."""
    if any(key.dtype.kind not in "biu" for key in keys):
        return None
    packed: list[npt.NDArray[np.uint64]] = []  # most significant first
    current: npt.NDArray[np.uint64] | None = None
    width = 0
    for key in reversed(keys):  # from the primary key down
        least, most = int(key.min()), int(key.max())
        if least == most:
            continue
        if (most - least).bit_length() > 64:
            return None
        value = key.astype(np.uint64) - np.uint64(least % (1 << 64))
        bits = int(np.bitwise_or.reduce(value))
        shift = (bits & -bits).bit_length() - 1
        if shift:
            value >>= np.uint64(shift)
        size = (bits >> shift).bit_length()
        if current is not None and width + size <= 64:
            current = (current << np.uint64(size)) | value
            width += size
        else:
            if current is not None:
                packed.append(current)
            current, width = value, size
    if current is None:
        return [np.zeros(len(keys[0]), dtype=np.uint64)]
    packed.append(current)
    return packed[::-1]


def distinct_rows(
    keys: list[npt.NDArray[np.generic]],
) -> tuple[list[list[int]], list[int]]:
    """The distinct combinations of ``keys`` (equal-length integer columns) and how many rows
    have each: ``values[k][i]`` is key ``k`` of the ``i``-th combination, ``counts[i]`` its
    rows. Sorted by every column at once (one lexsort, the last key the primary one), a new
    combination wherever one of them changes: no Python step per row."""
    values, counts, _ = distinct_rows_first(keys)
    return values, counts


def distinct_rows_first(
    keys: list[npt.NDArray[np.generic]],
) -> tuple[list[list[int]], list[int], list[int]]:
    """:func:`distinct_rows`, with the first row (the lowest position) of each combination:
    what a loop over the rows in order would meet each combination at."""
    if not keys or not len(keys[0]):
        return [[] for _ in keys], [], []
    order, starts = lexsorted_runs(keys)
    first = np.flatnonzero(starts)
    counts: list[int] = np.diff(np.append(first, len(order))).tolist()
    # lexsort is stable: within one combination the rows stay in order, the first is lowest.
    first_rows: list[int] = order[first].tolist()
    return [key[order[first]].tolist() for key in keys], counts, first_rows


def other_ends(
    columns: DumpColumns, rows: npt.NDArray[np.intp], others: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Which rows of ``rows`` and of ``others`` are the two ends of one connection on this
    host: the same family, each one's local address and port the other's remote ones. Found
    by sorting both sides' keys together (one lexsort): the ends of one connection are a run
    of equal keys holding rows of both sides. Returned as the rows of ``rows`` that have an
    other end and their runs' numbers, then the same of ``others``: a row of ``rows`` and
    one of ``others`` with the same number are two ends of one connection. (Runs rather than
    pairs: a key several rows of each side share would make as many pairs as their product.)"""
    empty = np.zeros(0, dtype=np.intp)
    if not len(rows) or not len(others):
        return empty, empty, empty, empty
    # This end's key, and the other end's written from its own side (remote first).
    mine: list[npt.NDArray[np.generic]] = [
        columns.family[rows],
        columns.src_high[rows],
        columns.src_low[rows],
        columns.sport[rows],
        columns.dst_high[rows],
        columns.dst_low[rows],
        columns.dport[rows],
    ]
    theirs: list[npt.NDArray[np.generic]] = [
        columns.family[others],
        columns.dst_high[others],
        columns.dst_low[others],
        columns.dport[others],
        columns.src_high[others],
        columns.src_low[others],
        columns.sport[others],
    ]
    keys = [np.concatenate((a, b)) for a, b in zip(mine, theirs, strict=True)]
    side = np.concatenate((np.zeros(len(rows), np.bool_), np.ones(len(others), np.bool_)))
    where = np.concatenate((rows, others))
    order, starts = lexsorted_runs(keys[::-1])  # the last key is lexsort's primary one
    run = np.cumsum(starts) - 1
    sides = side[order]
    runs = int(run[-1]) + 1
    both = (np.bincount(run[~sides], minlength=runs) > 0) & (
        np.bincount(run[sides], minlength=runs) > 0
    )
    matched = both[run]
    ours, others_matched = matched & ~sides, matched & sides
    placed = where[order]
    return placed[ours], run[ours], placed[others_matched], run[others_matched]


# Rows made objects at a time: each column of them is made a Python list first, and a whole
# state's rows at once would hold ~30 lists of 100,000 ints each beside the objects.
_ROWS_AT_A_TIME = 8192
# Equal endpoints and times are shared between the objects made, as the object decoder shares
# them (about a third of an object's memory), up to this many distinct ones.
_SHARED_LIMIT = 1 << 16


def sockets_at(
    columns: DumpColumns,
    rows: npt.NDArray[np.intp] | None = None,
    addresses: AddressTable | None = None,
) -> list[SocketDraft]:
    """Drafts (owners not set) of the given rows (every row: None), each field as the object
    decoder gives it; tests compare the two socket by socket."""
    chosen = np.arange(len(columns), dtype=np.intp) if rows is None else np.asarray(rows)
    table = addresses or AddressTable()
    endpoints: dict[tuple[int, int, int, int], Endpoint] = {}
    ints: dict[int, int] = {}
    drafts: list[SocketDraft] = []
    for start in range(0, len(chosen), _ROWS_AT_A_TIME):
        picked = take(columns, chosen[start : start + _ROWS_AT_A_TIME])
        drafts.extend(_sockets_of(picked, table, endpoints, ints))
    return drafts


def _sockets_of(
    picked: DumpColumns,
    table: AddressTable,
    endpoints: dict[tuple[int, int, int, int], Endpoint],
    ints: dict[int, int],
) -> list[SocketDraft]:
    address = table.get
    shared = ints.setdefault
    states, timers = STATE_OF_CODE, _TIMER_OF_CODE
    listen, time_wait, syn_recv = TcpState.LISTEN, TcpState.TIME_WAIT, TcpState.SYN_RECV
    no_timer, keepalive, zero_window = (
        TimerKind.NONE,
        TimerKind.KEEPALIVE,
        TimerKind.ZERO_WINDOW_PROBE,
    )
    unknown_state, unknown_owner = TcpState.UNKNOWN, OwnerSource.UNKNOWN
    new_object = object.__new__
    endpoint_builder, endpoint_class = ENDPOINT_SLOTS_OF, Endpoint
    tcp_info_builder, tcp_info_class = TCP_INFO_SLOTS_OF, TcpInfo
    new_draft = SocketDraft.__new__

    def endpoint(family_code: int, high: int, low: int, port: int) -> Endpoint:
        key = (family_code, high, low, port)
        found = endpoints.get(key)
        if found is None:
            found = new_object(endpoint_builder)
            found.address = address(family_code, high, low)
            found.port = port
            found.name = None
            found.__class__ = endpoint_class
            if len(endpoints) < _SHARED_LIMIT:
                endpoints[key] = found
        return found

    info_columns = [getattr(picked, name).tolist() for name in INFO_NAMES]
    info_rows = zip(*info_columns, strict=True)
    drafts: list[SocketDraft] = []
    append = drafts.append
    for (
        family_code,
        state_code,
        timer_code,
        retrans,
        sport,
        dport,
        src_high,
        src_low,
        dst_high,
        dst_low,
        cookie,
        expires,
        rqueue,
        wqueue,
        uid,
        inode,
        has_info,
        shutdown,
        drops,
        info_values,
    ) in zip(
        picked.family.tolist(),
        picked.state.tolist(),
        picked.timer.tolist(),
        picked.retrans.tolist(),
        picked.sport.tolist(),
        picked.dport.tolist(),
        picked.src_high.tolist(),
        picked.src_low.tolist(),
        picked.dst_high.tolist(),
        picked.dst_low.tolist(),
        picked.cookie.tolist(),
        picked.expires.tolist(),
        picked.rqueue.tolist(),
        picked.wqueue.tolist(),
        picked.uid.tolist(),
        picked.inode.tolist(),
        picked.has_info.tolist(),
        picked.shutdown.tolist(),
        picked.drops.tolist(),
        info_rows,
        strict=True,
    ):
        state = states[state_code]
        timer = timers[timer_code]
        retransmits: int | None = retrans
        probes: int | None = None
        if timer is zero_window or timer is keepalive:
            retransmits, probes = None, retrans
        tcp_info: TcpInfo | None = None
        if has_info:
            info = new_object(tcp_info_builder)
            (
                info.retransmits,
                info.probes,
                info.backoff,
                info.rto_us,
                info.unacked,
                info.last_data_sent_ms,
                info.last_data_recv_ms,
                info.last_ack_recv_ms,
                info.rtt_us,
                info.total_retrans,
                info.busy_time_us,
                info.rwnd_limited_us,
                info.sndbuf_limited_us,
            ) = info_values
            if len(ints) < _SHARED_LIMIT:
                info.rto_us = shared(info.rto_us, info.rto_us)
                info.rtt_us = shared(info.rtt_us, info.rtt_us)
                info.last_data_sent_ms = shared(info.last_data_sent_ms, info.last_data_sent_ms)
                info.last_data_recv_ms = shared(info.last_data_recv_ms, info.last_data_recv_ms)
                info.last_ack_recv_ms = shared(info.last_ack_recv_ms, info.last_ack_recv_ms)
            info.__class__ = tcp_info_class
            tcp_info = info
            if not ((state is time_wait or state is syn_recv) and inode == 0):
                retransmits = info_values[0]
            probes = info_values[1]
        if state is time_wait:
            retransmits = None
        is_listener = state is listen
        draft = new_draft(SocketDraft)
        draft.family = Family.IPV4 if family_code == 2 else Family.IPV6
        draft.local = endpoint(family_code, src_high, src_low, sport)
        draft.remote = endpoint(family_code, dst_high, dst_low, dport)
        draft.state = state
        draft.send_queue = None if is_listener else wqueue
        draft.recv_queue = rqueue
        draft.listen_backlog = wqueue if is_listener else None
        draft.timer = timer
        draft.timer_seconds = None if timer is no_timer else expires / 1000
        draft.retransmits = retransmits
        draft.probes = probes
        draft.uid = None if state is time_wait else shared(uid, uid)
        draft.inode = inode
        draft.pids = ()
        draft.owner_source = unknown_owner
        draft.raw_state = f"{state_code:02X}" if state is unknown_state else None
        draft.cookie = cookie
        draft.tcp_info = tcp_info
        draft.shutdown = None if shutdown < 0 else shutdown
        draft.truncated = False
        draft.netns = None
        draft.drops = None if drops < 0 else drops
        append(draft)
    return drafts


def take(columns: DumpColumns, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> DumpColumns:
    """The given rows of ``columns`` (positions, or a mask)."""
    return DumpColumns(**{name: getattr(columns, name)[rows] for name in COLUMN_NAMES})
