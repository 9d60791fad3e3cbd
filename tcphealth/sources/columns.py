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

from tcphealth.columnar import COLUMN_NAMES, INFO_NAMES, DumpColumns, take
from tcphealth.sources.dump_relay import NLMSG_DONE, NLMSG_ERROR, NLMSGHDR_HEAD
from tcphealth.sources.netlink import (
    _SKMEM_DROPS_AT,
    _SKMEM_DROPS_END,
    INET_DIAG_INFO,
    INET_DIAG_SHUTDOWN,
    INET_DIAG_SKMEMINFO,
    SOCKET_MESSAGES,
    TCP_INFO_FIELDS,
    TCP_INFO_STRUCT,
    NetlinkError,
)

Array = npt.NDArray[np.generic]
# Where messages start in a batch, or their lengths: one array per datagram or run of them
# (not a Python int each: 100,000 of them made and read back cost more than the walk).
Positions = npt.NDArray[np.intp]
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
if tuple(field.attribute for field in TCP_INFO_FIELDS) != INFO_NAMES:
    raise ImportError("columnar.INFO_NAMES is not the order of netlink.TCP_INFO_FIELDS")


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


def _walk_at_once(
    data: memoryview, base: int, starts: list[Positions], lengths: list[Positions]
) -> bool:
    """:func:`_walk` of a datagram of socket messages only, without a Python step per
    message: every 4-byte position that could start one is found at once (a header of the
    first message's type -- a socket's -- sequence number and port id), and kept only
    if those positions are exactly the chain of messages from the first to the end of the
    datagram (each one's aligned length leads to the next). False, nothing noted: not such
    a datagram, or not sure (NLMSG_DONE, an error, another type, stray bytes, a body that
    looks like a header) -- :func:`_walk` reads it then."""
    end = len(data)
    if end < _HEADER_SIZE or end % 4:
        return False
    words = np.frombuffer(data, dtype=np.uint32)  # native order, as netlink sends
    halves = np.frombuffer(data, dtype=np.uint16)
    if int(halves[2]) not in SOCKET_MESSAGES:
        return False
    count = len(words) - 3  # the positions a 16-byte header fits at: nlmsg_len, nlmsg_type
    # (with the flags), nlmsg_seq, nlmsg_pid. The port id first, over every position (the
    # rarest of the four in a message body), then the other three at those few only.
    at = np.flatnonzero(words[3 : count + 3] == words[3])
    at = at[(halves[2 * at + 2] == halves[2]) & (words[at + 2] == words[2])]
    found = words[at].astype(np.int64)
    at, found = at[found >= _HEADER_SIZE], found[found >= _HEADER_SIZE]
    if not len(at) or at[0] != 0:
        return False
    following = at + ((found + 3) >> 2)  # the aligned length, in words
    if following[-1] != len(words) or not bool(np.all(following[:-1] == at[1:])):
        return False
    starts.append(at * 4 + (base + _HEADER_SIZE))
    lengths.append((found - _HEADER_SIZE).astype(np.intp))
    return True


def _walk(
    data: memoryview, where: str, base: int, starts: list[Positions], lengths: list[Positions]
) -> bool:
    """Note where each socket message of one datagram starts (plus ``base``: where the
    datagram will sit in its batch) and its body's length; whether NLMSG_DONE came. The one
    per-message Python loop of the columns."""
    header = NLMSGHDR_HEAD.unpack_from
    found_starts: list[int] = []
    found_lengths: list[int] = []
    add_start, add_length = found_starts.append, found_lengths.append
    offset, end = 0, len(data)
    ended = False
    while offset < end:
        if end - offset < _HEADER_SIZE:
            raise NetlinkError(where, f"{end - offset} stray bytes after the last message")
        length, kind = header(data, offset)
        if length < _HEADER_SIZE or offset + length > end:
            raise NetlinkError(where, f"message length {length} does not fit the reply")
        if kind in SOCKET_MESSAGES:
            add_start(base + offset + _HEADER_SIZE)
            add_length(length - _HEADER_SIZE)
        elif kind == NLMSG_DONE:
            ended = True
            break
        elif kind == NLMSG_ERROR:
            body = data[offset + _HEADER_SIZE : offset + length]
            code = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
            raise NetlinkError(where, f"kernel answered error {errno.errorcode.get(code, code)}")
        offset += (length + 3) & ~3
    if found_starts:
        starts.append(np.array(found_starts, dtype=np.intp))
        lengths.append(np.array(found_lengths, dtype=np.intp))
    return ended


def _gathered(
    data: memoryview, where: str, starts: Sequence[Positions], lengths: Sequence[Positions]
) -> dict[str, Array] | None:
    """The columns of the socket messages of a batch (where :func:`_walk` found them); None:
    not for this decoder."""
    all_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.intp)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.intp)
    count = len(all_starts)
    out = _empty(count)
    if not count:
        return out
    gather = _Gather(data)
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
    return out


# The datagrams of a dump are decoded in batches of about this many bytes: a datagram holds
# a few dozen sockets, and each decoding costs a few dozen numpy calls whatever its size.
BATCH_BYTES = 4 << 20


def decode(chunks: Iterable[memoryview | bytes], where: str) -> tuple[DumpColumns, bool] | None:
    """The sockets of one family's dump (its chunks, each read before the next is asked
    for), and whether NLMSG_DONE came; None where a message is not one this decoder reads.
    Each datagram's headers are walked as it comes; its bytes are copied into a batch of
    about BATCH_BYTES, whose fields are gathered at once (a datagram holds a few dozen
    sockets, and a gathering costs a few dozen numpy calls whatever its size)."""
    decoded = decoded_parts(chunks, where)
    if decoded is None:
        return None
    parts, done = decoded
    return joined(parts), done


def joined(parts: Sequence[dict[str, Array]] | Sequence[DumpColumns]) -> DumpColumns:
    """The columns of several decodings, one after the other. Parts given as dicts are
    emptied as their columns are joined, so that the peak holds one column twice, not all."""
    if not parts:
        return DumpColumns(**_empty(0))  # type: ignore[arg-type]
    values: list[dict[str, Array]] = [
        part if isinstance(part, dict) else {name: getattr(part, name) for name in COLUMN_NAMES}
        for part in parts
    ]
    return DumpColumns(
        **{name: np.concatenate([part.pop(name) for part in values]) for name in COLUMN_NAMES}
    )


def in_family_order(columns: DumpColumns) -> DumpColumns:
    """The rows of a dump of both families (:func:`netlink.build_request_of_both`) in the
    order of the two dumps one per family: IPv4's rows first, then IPv6's, each family's in
    the order they came (the kernel walks its tables once, in the same order, and gives
    each socket of the family asked for)."""
    later = columns.family != _AF_INET
    if not bool(later.any()) or bool(later[np.argmax(later) :].all()):
        return columns  # already so
    return take(columns, np.concatenate([np.flatnonzero(~later), np.flatnonzero(later)]))


def decoded_parts(
    chunks: Iterable[memoryview | bytes], where: str
) -> tuple[list[dict[str, Array]], bool] | None:
    """:func:`decode`, its batches' columns not joined yet (for :func:`joined` to join with
    another family's at once).

    The datagrams of socket messages only (nearly all of a dump: :func:`_plain`) are walked
    together, a batch at a time (:func:`_walk_at_once` over all of them: a few numpy calls per
    batch instead of per datagram); a datagram that may end the dump (NLMSG_DONE, an error) or
    does not start with a socket message is walked by itself as it comes, after those before
    it. Where the batch's walk is not sure, its datagrams are walked one by one, as they came."""
    parts: list[dict[str, Array]] = []
    # One buffer, filled batch after batch: its pages are the kernel's to fault in once, not
    # once per batch (a fresh 4 MB each time: 1,000 page faults per 4 MB of the dump).
    batch = bytearray(BATCH_BYTES)
    filled = 0  # the batch holds this many bytes
    starts: list[Positions] = []
    lengths: list[Positions] = []
    ends: list[int] = []  # where each datagram not walked yet ends in the batch
    walked_to = 0  # the batch is walked up to here
    done = False

    def walk_pending() -> bool:
        """Walk the datagrams not walked yet; whether one of them ended the dump."""
        nonlocal walked_to
        if not ends:
            return False
        ended = False
        with memoryview(batch) as whole:
            with whole[walked_to : ends[-1]] as pending:
                at_once = _walk_at_once(pending, walked_to, starts, lengths)
            if not at_once:
                for end in ends:
                    with whole[walked_to:end] as view:
                        ended = not _walk_at_once(view, walked_to, starts, lengths) and _walk(
                            view, where, walked_to, starts, lengths
                        )
                    walked_to = end
                    if ended:  # not in the datagram that ends the dump, as the kernel sends
                        break
        if at_once:
            walked_to = ends[-1]
        # Where one ended the dump, the datagrams after it stay unwalked: no row reads them.
        ends.clear()
        return ended

    def gathered() -> bool:
        """The batch's columns onto ``parts``, and the batch emptied; False: not for this
        decoder."""
        nonlocal starts, lengths, filled, walked_to
        if starts:
            with memoryview(batch) as whole, whole[:filled] as data:
                part = _gathered(data, where, starts, lengths)
            if part is None:
                return False
            parts.append(part)
        starts, lengths, filled, walked_to = [], [], 0, 0
        return True

    for chunk in chunks:
        view = memoryview(chunk)
        size = len(view)
        if filled + size > len(batch):
            done = walk_pending()
            if not gathered():
                return None
            if done:
                break
            if size > len(batch):  # a datagram larger than a batch: not from this kernel
                batch = bytearray(size)
        if _plain(view):
            batch[filled : filled + size] = view
            filled += size
            ends.append(filled)
        else:
            done = walk_pending()
            if not done:
                done = not _walk_at_once(view, filled, starts, lengths) and _walk(
                    view, where, filled, starts, lengths
                )
                batch[filled : filled + size] = view
                filled += size
                walked_to = filled
        if done:
            break
    if not done:
        done = walk_pending()
    if not gathered():
        return None
    return parts, done


def _plain(data: memoryview) -> bool:
    """Whether a datagram can wait to be walked with others: whole 4-byte words, a socket
    message first, and not ending in a message that may end the dump (NLMSG_DONE, which the
    kernel puts after a dump's last message, or an error) -- the reading must stop at that
    one, so it is walked as it comes."""
    size = len(data)
    if size < _HEADER_SIZE or size % 4:
        return False
    if NLMSGHDR_HEAD.unpack_from(data, 0)[1] not in SOCKET_MESSAGES:
        return False
    if size >= _DONE_SIZE + _HEADER_SIZE:
        length, kind = NLMSGHDR_HEAD.unpack_from(data, size - _DONE_SIZE)
        if kind in (NLMSG_DONE, NLMSG_ERROR) and length == _DONE_SIZE:
            return False
    return True


_DONE_SIZE = _HEADER_SIZE + 4  # NLMSG_DONE: the header and an int (the dump's errno)
