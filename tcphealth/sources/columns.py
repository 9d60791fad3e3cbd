"""The netlink dump as columns: one numpy array per field, one row per socket, in dump order.

Why: :class:`~tcphealth.sources.netlink.Decoder` makes one Python object per socket (a
``Socket``, its ``TcpInfo``, often an ``Endpoint``): about 4 us a socket, most of a scrape's
decoding at 100,000 sockets (benchmarks/RESULTS.md, sessions 11-12). Counting over the bulk
of a host's sockets (per state, per holder, per destination) needs no object; a column per
field lets numpy do it, and objects are made only for the rows that need one
(:func:`sockets_at`).

The messages of one kind (full sockets, TIME_WAIT, request sockets) have one length and the
same attributes in the same order. Per chunk of the reply the decoder:

1. walks the message headers (a tight loop over lengths: the only per-message Python work);
2. for each message length, learns the layout from its first message, walking and checking
   every attribute as the object decoder does, then checks that every message of that length
   carries the same attribute headers (vectorised);
3. gathers each field of every message at once (a numpy gather at the messages' offsets).

Anything unusual -- a tcp_info shorter than the fields we read (kernels before 4.10), one
message length with two attribute orders, a message that is not whole -- makes
:func:`decode` answer ``None``: the caller then decodes with the object decoder, which
handles every case with its checks. A malformed reply raises the object decoder's errors.

Values are the kernel's raw ones (state and timer codes, the retrans byte); the meaning is
given to them where the object decoder gives it, in :func:`sockets_at`, which tests compare
with it socket by socket.
"""

from __future__ import annotations

import errno
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tcphealth.columnar import COLUMN_NAMES, AddressTable, DumpColumns
from tcphealth.model import (
    ENDPOINT_SLOTS_OF,
    TCP_INFO_SLOTS_OF,
    Endpoint,
    Family,
    OwnerSource,
    SocketDraft,
    TcpInfo,
    TcpState,
    TimerKind,
)
from tcphealth.sources.dump_relay import NLMSG_DONE, NLMSG_ERROR, NLMSGHDR_HEAD
from tcphealth.sources.netlink import (
    _SKMEM_DROPS_AT,
    _SKMEM_DROPS_END,
    _STATE_BY_CODE,
    _TIMER_BY_CODE,
    INET_DIAG_INFO,
    INET_DIAG_SHUTDOWN,
    INET_DIAG_SKMEMINFO,
    SOCK_DIAG_BY_FAMILY,
    TCP_INFO_FIELDS,
    TCP_INFO_STRUCT,
    NetlinkError,
)

Array = npt.NDArray[np.generic]
_U8 = np.uint8
_U32 = np.uint32
_U64 = np.uint64
_HEADER_SIZE = 16  # nlmsghdr
_MSG_SIZE = 72  # inet_diag_msg
_AF_INET, _AF_INET6 = 2, 10
_LITTLE = sys.byteorder == "little"

# inet_diag_msg, offsets from the start of the message body: (column, offset, kind) where kind
# is "u8" (one byte), "u32" (host order), "port" (two bytes, network order).
_MSG_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("family", 0, "u8"),
    ("state", 1, "u8"),
    ("timer", 2, "u8"),
    ("retrans", 3, "u8"),
    ("sport", 4, "port"),
    ("dport", 6, "port"),
    ("expires", 52, "u32"),
    ("rqueue", 56, "u32"),
    ("wqueue", 60, "u32"),
    ("uid", 64, "u32"),
    ("inode", 68, "u32"),
)
_SRC_AT, _DST_AT, _COOKIE_AT = 8, 24, 44


_DTYPES: dict[str, type[np.generic]] = {
    **dict.fromkeys(("family", "state", "timer", "retrans"), np.uint8),
    **dict.fromkeys(("retransmits", "probes", "backoff"), np.uint8),
    **dict.fromkeys(("sport", "dport"), np.uint32),
    **dict.fromkeys(("src_high", "src_low", "dst_high", "dst_low", "cookie"), np.uint64),
    **dict.fromkeys(("busy_time_us", "rwnd_limited_us", "sndbuf_limited_us"), np.uint64),
    "has_info": np.bool_,
    "shutdown": np.int16,
    "drops": np.int64,
}
_INFO_NAMES = tuple(field.attribute for field in TCP_INFO_FIELDS)


def _dtype(name: str) -> type[np.generic]:
    return _DTYPES.get(name, np.uint32)


@dataclass(frozen=True)
class _Layout:
    """Where the attributes of the messages of one length sit (offsets from the body start):
    each attribute header's offset and its (length, type) word, and where tcp_info's,
    the shutdown byte's and skmem's drops' payloads start (-1: absent)."""

    headers: tuple[tuple[int, int, int], ...]  # (offset, length, type)
    info_at: int
    shutdown_at: int
    drops_at: int


def _learn(data: memoryview, start: int, end: int, where: str) -> _Layout | None:
    """The layout of the message in ``data[start:end]``, its attributes walked and checked as
    the object decoder checks them; None where it is not one this decoder reads."""
    if end - start < _MSG_SIZE:
        raise NetlinkError(where, f"inet_diag message of {end - start} bytes, need {_MSG_SIZE}")
    headers: list[tuple[int, int, int]] = []
    info_at = shutdown_at = drops_at = -1
    offset = start + _MSG_SIZE
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > end:
            raise NetlinkError(where, f"attribute of length {length} runs past its message")
        headers.append((offset - start, length, kind))
        if kind == INET_DIAG_INFO:
            if length - 4 < TCP_INFO_STRUCT.size:
                return None  # an older kernel's short tcp_info
            info_at = offset - start + 4
        elif kind == INET_DIAG_SHUTDOWN and length >= 5:
            shutdown_at = offset - start + 4
        elif kind == INET_DIAG_SKMEMINFO and length - 4 >= _SKMEM_DROPS_END:
            drops_at = offset - start + 4 + _SKMEM_DROPS_AT
        offset += (length + 3) & ~3
    if offset != end:
        return None  # bytes left over that are no attribute
    return _Layout(tuple(headers), info_at, shutdown_at, drops_at)


class _Gather:
    """Reads fields at given offsets of every message of one chunk at once."""

    def __init__(self, data: memoryview) -> None:
        usable = len(data) & ~3
        self.bytes = np.frombuffer(data, dtype=_U8)
        # Netlink aligns every message and attribute to 4 bytes, so every u32 field is one
        # word of these views: host order, and big-endian for the addresses.
        self.words = np.frombuffer(data[:usable], dtype=np.dtype("=u4"))
        self.big = np.frombuffer(data[:usable], dtype=np.dtype(">u4"))

    def u8(self, at: npt.NDArray[np.intp]) -> npt.NDArray[np.uint8]:
        return self.bytes[at]

    def u32(self, at: npt.NDArray[np.intp]) -> npt.NDArray[np.uint32]:
        if at.size and int(at[0]) % 4:
            raise ValueError("unaligned u32")  # not netlink's alignment: never for a real dump
        words: npt.NDArray[np.uint32] = self.words[at >> 2]
        return words

    def u64(self, at: npt.NDArray[np.intp]) -> npt.NDArray[np.uint64]:
        first = self.u32(at).astype(_U64)
        second = self.u32(at + 4).astype(_U64)
        return (first | (second << _U64(32))) if _LITTLE else ((first << _U64(32)) | second)

    def port(self, at: npt.NDArray[np.intp]) -> npt.NDArray[np.uint32]:
        high = self.bytes[at].astype(_U32)
        port: npt.NDArray[np.uint32] = (high << _U32(8)) | self.bytes[at + 1]
        return port

    def address(self, at: npt.NDArray[np.intp]) -> tuple[Array, Array]:
        word = at >> 2
        big = self.big
        high = (big[word].astype(_U64) << _U64(32)) | big[word + 1]
        low = (big[word + 2].astype(_U64) << _U64(32)) | big[word + 3]
        return high, low


def _empty(count: int) -> dict[str, Array]:
    out: dict[str, Array] = {name: np.zeros(count, dtype=_dtype(name)) for name in COLUMN_NAMES}
    out["shutdown"][:] = -1
    out["drops"][:] = -1
    return out


def _decode_chunk(data: memoryview, where: str) -> tuple[dict[str, Array], bool] | None:
    """One chunk's sockets as columns, and whether NLMSG_DONE came; None: not for this
    decoder."""
    header = NLMSGHDR_HEAD.unpack_from
    starts: list[int] = []
    lengths: list[int] = []
    add_start, add_length = starts.append, lengths.append
    offset, end, done = 0, len(data), False
    while offset < end:
        if end - offset < _HEADER_SIZE:
            raise NetlinkError(where, f"{end - offset} stray bytes after the last message")
        length, kind = header(data, offset)
        if length < _HEADER_SIZE or offset + length > end:
            raise NetlinkError(where, f"message length {length} does not fit the reply")
        if kind == SOCK_DIAG_BY_FAMILY:
            add_start(offset + _HEADER_SIZE)
            add_length(length - _HEADER_SIZE)
        elif kind == NLMSG_DONE:
            done = True
            break
        elif kind == NLMSG_ERROR:
            body = data[offset + _HEADER_SIZE : offset + length]
            code = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
            raise NetlinkError(where, f"kernel answered error {errno.errorcode.get(code, code)}")
        offset += (length + 3) & ~3
    count = len(starts)
    out = _empty(count)
    if not count:
        return out, done
    gather = _Gather(data)
    all_starts = np.array(starts, dtype=np.intp)
    all_lengths = np.array(lengths, dtype=np.intp)
    for length in np.unique(all_lengths).tolist():
        rows = np.flatnonzero(all_lengths == length)
        at = all_starts[rows]
        first = int(at[0])
        layout = _learn(data, first, first + length, where)
        if layout is None:
            return None
        for attribute_at, attribute_length, kind in layout.headers:
            word = gather.u32(at + attribute_at)
            expected = struct.unpack("=I", struct.pack("=HH", attribute_length, kind))[0]
            if not bool(np.all(word == expected)):
                return None  # one length, two layouts: leave it to the object decoder
        family = gather.u8(at)
        if not bool(np.all((family == _AF_INET) | (family == _AF_INET6))):
            bad = int(family[(family != _AF_INET) & (family != _AF_INET6)][0])
            raise NetlinkError(where, f"address family {bad} in a TCP dump")
        for name, field_at, kind_name in _MSG_FIELDS:
            place = at + field_at
            if kind_name == "u8":
                out[name][rows] = gather.u8(place)
            elif kind_name == "port":
                out[name][rows] = gather.port(place)
            else:
                out[name][rows] = gather.u32(place)
        out["src_high"][rows], out["src_low"][rows] = gather.address(at + _SRC_AT)
        out["dst_high"][rows], out["dst_low"][rows] = gather.address(at + _DST_AT)
        out["cookie"][rows] = gather.u64(at + _COOKIE_AT)
        if layout.info_at >= 0:
            out["has_info"][rows] = True
            base = at + layout.info_at
            for info in TCP_INFO_FIELDS:
                place = base + info.offset
                if info.c_type == "__u8":
                    out[info.attribute][rows] = gather.u8(place)
                elif info.c_type == "__u32":
                    out[info.attribute][rows] = gather.u32(place)
                else:
                    out[info.attribute][rows] = gather.u64(place)
        if layout.shutdown_at >= 0:
            out["shutdown"][rows] = gather.u8(at + layout.shutdown_at)
        if layout.drops_at >= 0:
            out["drops"][rows] = gather.u32(at + layout.drops_at)
    return out, done


def decode(chunks: Iterable[memoryview | bytes], where: str) -> tuple[DumpColumns, bool] | None:
    """The sockets of one family's dump (its chunks, each read before the next is asked
    for), and whether NLMSG_DONE came; None where a message is not one this decoder reads."""
    parts: list[dict[str, Array]] = []
    done = False
    for chunk in chunks:
        decoded = _decode_chunk(memoryview(chunk), where)
        if decoded is None:
            return None
        part, done = decoded
        parts.append(part)
        if done:
            break
    return joined(parts), done


def joined(parts: Sequence[dict[str, Array]] | Sequence[DumpColumns]) -> DumpColumns:
    """The columns of several decodings, one after the other."""
    if not parts:
        return DumpColumns(**_empty(0))  # type: ignore[arg-type]
    values: list[dict[str, Array]] = [
        part if isinstance(part, dict) else {name: getattr(part, name) for name in COLUMN_NAMES}
        for part in parts
    ]
    return DumpColumns(
        **{name: np.concatenate([part[name] for part in values]) for name in COLUMN_NAMES}
    )


def take(columns: DumpColumns, rows: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> DumpColumns:
    """The given rows of ``columns`` (positions, or a mask)."""
    return DumpColumns(**{name: getattr(columns, name)[rows] for name in COLUMN_NAMES})


def sockets_at(
    columns: DumpColumns,
    rows: Sequence[int] | npt.NDArray[np.intp] | None = None,
    addresses: AddressTable | None = None,
) -> list[SocketDraft]:
    """Drafts (owners not set) of the given rows (every row: None), each field as the object
    decoder gives it; tests compare the two socket by socket."""
    picked = columns if rows is None else take(columns, np.asarray(rows, dtype=np.intp))
    table = addresses or AddressTable()
    address = table.get
    endpoints: dict[tuple[int, int, int, int], Endpoint] = {}
    states, timers = _STATE_BY_CODE, _TIMER_BY_CODE
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
            endpoints[key] = found
        return found

    info_columns = [getattr(picked, name).tolist() for name in _INFO_NAMES]
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
            info.__class__ = tcp_info_class
            tcp_info = info
            if not ((state is time_wait or state is syn_recv) and inode == 0):
                retransmits = info_values[0]
            probes = info_values[1]
        if state is time_wait:
            retransmits = None
        is_listener = state is listen
        draft = new_draft(SocketDraft)
        draft.family = Family.IPV4 if family_code == _AF_INET else Family.IPV6
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
        draft.uid = None if state is time_wait else uid
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
