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

from tcphealth.model import IPAddress, TcpState, state_from_kernel_code

# Kernel state code -> the model's state (one byte: looked up by index).
STATE_OF_CODE: tuple[TcpState, ...] = tuple(state_from_kernel_code(code) for code in range(256))


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


COLUMN_NAMES = tuple(field.name for field in fields(DumpColumns))


@dataclass(frozen=True)
class SocketTable:
    """Every socket of a snapshot as columns, with its holders: ``groups[holders[row]]`` are
    the pids holding that row's socket (``groups[0]`` is ``()``: none known), after the same
    listener credit and second look as the object path."""

    columns: DumpColumns
    holders: npt.NDArray[np.uint32]
    groups: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.columns)


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
    order = np.lexsort(keys)
    ordered = [key[order] for key in keys]
    starts = np.zeros(len(order), dtype=np.bool_)
    starts[0] = True
    for key in ordered:
        starts[1:] |= key[1:] != key[:-1]
    first = np.flatnonzero(starts)
    counts: list[int] = np.diff(np.append(first, len(order))).tolist()
    # lexsort is stable: within one combination the rows stay in order, the first is lowest.
    first_rows: list[int] = order[first].tolist()
    return [key[first].tolist() for key in ordered], counts, first_rows
