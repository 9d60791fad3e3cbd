"""The netlink sock_diag source: the kernel interface ``ss`` uses (NETLINK_SOCK_DIAG, inet_diag).

Compared with /proc/net/tcp it is consistent (a dump never lists a socket twice) and it tells
more: a listener's maximum backlog, ``tcp_info`` (idle times, retransmits, rtt), the shutdown
bits and the socket cookie. Pure ``socket`` + ``struct``; no library.

One request per address family::

    nlmsghdr  | inet_diag_req_v2 {family, protocol, ext, pad, states, inet_diag_sockid}
    reply:    nlmsghdr | inet_diag_msg {family, state, timer, retrans, sockid, expires,
                                        rqueue, wqueue, uid, inode} | rtattr…  … NLMSG_DONE

Addresses and ports in ``inet_diag_sockid`` are in network byte order; every other field is in
host order.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import operator
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tcphealth import gcpause
from tcphealth.errors import InputError
from tcphealth.model import (
    ENDPOINT_SLOTS_OF,
    TCP_INFO_SLOTS_OF,
    Endpoint,
    Family,
    IPAddress,
    OwnerSource,
    Snapshot,
    Socket,
    SocketDraft,
    TcpInfo,
    TcpState,
    TimerKind,
    new_endpoint,
    new_tcp_info,
    state_from_kernel_code,
    timer_from_kernel_code,
)
from tcphealth.sources import background_scan, dump_relay, procfs
from tcphealth.sources import owners as owners_module
from tcphealth.sources.dump_relay import (  # the netlink framing both modules read
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR_HEAD,
)

SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_INFO = 2
INET_DIAG_SHUTDOWN = 8
# The socket's memory as u32 (include/uapi/linux/sock_diag.h, SK_MEMINFO_*): rmem_alloc, rcvbuf,
# wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops -- what ss -m prints as
# skmem:(r,rb,t,tb,f,w,o,bl,d). We read the drops, the ninth.
INET_DIAG_SKMEMINFO = 7
_SKMEM_DROPS_AT = 32
_SKMEM_DROPS_END = _SKMEM_DROPS_AT + 4
ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then sockid
_REQUEST = struct.Struct("=BBBxI")
# inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2] (host order)
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# The whole inet_diag_msg in one unpack: family, state, timer, retrans; sockid {sport, dport,
# src, dst, if, cookie[2]}; expires (ms), rqueue, wqueue, uid, inode. The ports are in network
# byte order while everything else is in host order, so they are unpacked as host-order
# integers and swapped through _port_table().
_MSG = struct.Struct("=BBBBHH16s16sIIIIIIII")
_MSG_SIZE = _MSG.size  # 72
_RTATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class TcpInfoField:
    """One field of the kernel's ``struct tcp_info`` (include/uapi/linux/tcp.h) that we read:
    its C name and type, its byte offset, and the :class:`TcpInfo` attribute it fills."""

    c_name: str
    c_type: str  # "__u8", "__u32" or "__u64", in host byte order
    offset: int
    attribute: str

    @property
    def code(self) -> str:
        return _STRUCT_CODES[self.c_type]

    @property
    def end(self) -> int:
        return self.offset + struct.calcsize("=" + self.code)


_STRUCT_CODES = {"__u8": "B", "__u32": "I", "__u64": "Q"}

# The fields we use, in the order they sit in the struct. Older kernels send a shorter struct:
# a field past its end is unknown (None). Both decoders -- parse_tcp_info for any length, and
# the fast path of Decoder.drafts, which reads them with the whole message in one unpack --
# get their values from TCP_INFO_STRUCT, in this order.
TCP_INFO_FIELDS: tuple[TcpInfoField, ...] = (
    TcpInfoField("tcpi_retransmits", "__u8", 2, "retransmits"),
    TcpInfoField("tcpi_probes", "__u8", 3, "probes"),
    TcpInfoField("tcpi_backoff", "__u8", 4, "backoff"),
    TcpInfoField("tcpi_rto", "__u32", 8, "rto_us"),
    TcpInfoField("tcpi_unacked", "__u32", 24, "unacked"),
    TcpInfoField("tcpi_last_data_sent", "__u32", 44, "last_data_sent_ms"),
    TcpInfoField("tcpi_last_data_recv", "__u32", 52, "last_data_recv_ms"),
    TcpInfoField("tcpi_last_ack_recv", "__u32", 56, "last_ack_recv_ms"),
    TcpInfoField("tcpi_rtt", "__u32", 68, "rtt_us"),
    TcpInfoField("tcpi_total_retrans", "__u32", 100, "total_retrans"),
    TcpInfoField("tcpi_busy_time", "__u64", 168, "busy_time_us"),
    TcpInfoField("tcpi_rwnd_limited", "__u64", 176, "rwnd_limited_us"),
    TcpInfoField("tcpi_sndbuf_limited", "__u64", 184, "sndbuf_limited_us"),
)


def _struct_of(fields: Sequence[TcpInfoField]) -> struct.Struct:
    """One struct reading ``fields`` (sorted by offset, not overlapping), padding between them."""
    fmt, at = "=", 0
    for field in fields:
        if field.offset < at:
            raise ValueError(f"{field.c_name} overlaps the field before it")
        fmt += (f"{field.offset - at}x" if field.offset > at else "") + field.code
        at = field.end
    return struct.Struct(fmt)


# Every field we use, in one unpack, from a tcp_info long enough to hold them all (kernel 4.10
# and later; an older kernel's shorter struct is read field by field by parse_tcp_info).
TCP_INFO_STRUCT = _struct_of(TCP_INFO_FIELDS)
TCP_INFO_NAMES = tuple(field.attribute for field in TCP_INFO_FIELDS)
# A shorter tcp_info than that is read field by field; one too short to hold the three one-byte
# counters is read as nothing known.
_TCPI_BYTES_END = max(field.end for field in TCP_INFO_FIELDS if field.c_type == "__u8")


@functools.cache
def _port_table() -> list[int]:
    """Port number as the wire carries it (read as a host-order u16) -> the port. One shared
    int per port, so 300,000 sockets do not carry 600,000 separate int objects. Built on the
    first dump (a few ms), not on import."""
    if sys.byteorder == "big":
        return list(range(1 << 16))
    return [((raw & 0xFF) << 8) | (raw >> 8) for raw in range(1 << 16)]


# Caches bounded in size, so a host talking to millions of distinct peers costs no more than
# building each value afresh.
_CACHE_LIMIT = 1 << 16

RECEIVE_BUFFER = 1 << 20
DUMP_TIMEOUT = 10.0  # seconds without a reply before a dump is given up
_FAMILIES = (Family.IPV4, Family.IPV6)


class NetlinkError(InputError):
    """The kernel's reply could not be read: truncated, malformed, or an error answer."""


class NetlinkUnavailable(Exception):
    """This kernel (or this sandbox) does not offer NETLINK_SOCK_DIAG."""


# The older request, inet_diag_req (family, src_len, dst_len, ext; the sockid; states, dbs),
# which the kernel still serves for TCP with the family left open (AF_UNSPEC): one dump of
# both families. A dump walks every socket of the host's tables, whichever family it asks
# for, so two dumps walk them twice (benchmarks/RESULTS.md, session 15: a quarter of the
# kernel's time for the dump). The replies are the same inet_diag_msg, of this type.
TCPDIAG_GETSOCK = 18
_REQUEST_V1 = struct.Struct("=BBBB")
_REQUEST_V1_TAIL = struct.Struct("=II")
# The message types of a socket in a dump's reply: to either request.
SOCKET_MESSAGES = (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)


def build_request(family: int, sequence: int, *, with_tcp_info: bool) -> bytes:
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, _extensions(with_tcp_info), ALL_STATES)
    body += bytes(_SOCKID.size + _SOCKID_TAIL.size)  # match any socket
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + body


def build_request_of_both(sequence: int, *, with_tcp_info: bool) -> bytes:
    """A dump of every TCP socket of both families in one walk (TCPDIAG_GETSOCK): the
    messages of IPv4 and IPv6 sockets come mixed, each family's in the order its own dump
    gives them."""
    body = _REQUEST_V1.pack(socket.AF_INET, 0, 0, _extensions(with_tcp_info))
    body += bytes(_SOCKID.size + _SOCKID_TAIL.size)  # match any socket
    body += _REQUEST_V1_TAIL.pack(ALL_STATES, 0)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + body


def _extensions(with_tcp_info: bool) -> int:
    """The attributes asked for besides the message: the shutdown byte, and with tcp_info the
    socket's memory (its drops). The rules read both for every state but LISTEN (and a
    TIME_WAIT socket carries neither): no attribute asked for here goes unread
    (tests/test_lean_pipeline.py checks that every column read is in the reply)."""
    extensions = 1 << (INET_DIAG_SHUTDOWN - 1)
    if with_tcp_info:
        # The socket's memory comes with its tcp_info: both are the per-socket detail.
        extensions |= 1 << (INET_DIAG_INFO - 1) | 1 << (INET_DIAG_SKMEMINFO - 1)
    return extensions


def parse_tcp_info(data: memoryview) -> TcpInfo:
    """Read the fields we use from a ``struct tcp_info`` of any kernel's length."""
    if len(data) >= TCP_INFO_STRUCT.size:
        return Decoder()._tcp_info(TCP_INFO_STRUCT.unpack_from(data, 0))
    if len(data) < _TCPI_BYTES_END:
        return TcpInfo()
    known = {
        field.attribute: struct.unpack_from("=" + field.code, data, field.offset)[0]
        for field in TCP_INFO_FIELDS
        if field.end <= len(data)
    }
    return TcpInfo(**known)


_MAX_LAYOUTS = 64  # message lengths whose layout is remembered


def _no_headers(values: tuple[Any, ...]) -> tuple[int, ...]:
    return ()


@dataclass(frozen=True)
class _Layout:
    """Where the attributes sit in the messages of one length, learnt from the first one.

    Every socket of a kind (full sockets, TIME_WAIT, request sockets) comes with the same
    attributes in the same order, so one ``struct`` reads a whole message -- the inet_diag_msg,
    each attribute's header, the tcp_info fields and the shutdown byte -- in one call instead
    of a loop over the attributes. A message is decoded this way only when every attribute
    header it holds is the one learnt (``headers``); any other is walked attribute by
    attribute, with every check, as before.
    """

    struct: struct.Struct
    headers_of: Callable[[tuple[Any, ...]], tuple[int, ...]]  # each attribute's (length, type)
    headers: tuple[int, ...]  # their values in the message this was learnt from
    info_at: int  # where the TCP_INFO_STRUCT fields start in the unpacked values; -1: no tcp_info
    shutdown_at: int  # where the shutdown byte is; -1: none
    drops_at: int = -1  # where skmem's drops are; -1: none

    @classmethod
    def of(cls, attributes: list[tuple[int, int]]) -> _Layout | None:
        """The layout of a message whose attributes are ``(length, type)`` in this order
        (none at all for a TIME_WAIT socket)."""
        fmt = _MSG.format  # "=..." : standard sizes, no automatic padding
        count = 16  # values _MSG yields
        positions: list[int] = []
        headers: list[int] = []
        info_at = shutdown_at = drops_at = -1
        for length, kind in attributes:
            padded = (length + 3) & ~3
            fmt += "HH"
            positions += [count, count + 1]
            headers += [length, kind]
            count += 2
            payload = padded - 4
            if kind == INET_DIAG_INFO and length - 4 >= TCP_INFO_STRUCT.size:
                fmt += TCP_INFO_STRUCT.format.lstrip("=") + f"{payload - TCP_INFO_STRUCT.size}x"
                info_at, count = count, count + len(TCP_INFO_FIELDS)
            elif kind == INET_DIAG_SHUTDOWN and length >= 5:
                fmt += f"B{payload - 1}x"
                shutdown_at, count = count, count + 1
            elif kind == INET_DIAG_SKMEMINFO and length - 4 >= _SKMEM_DROPS_END:
                fmt += f"{_SKMEM_DROPS_AT}xI{payload - _SKMEM_DROPS_END}x"
                drops_at, count = count, count + 1
            elif kind == INET_DIAG_INFO:
                return None  # a short tcp_info: leave it to parse_tcp_info
            else:
                fmt += f"{payload}x"
        # Two or more positions, so itemgetter returns a tuple.
        return cls(
            struct.Struct(fmt),
            operator.itemgetter(*positions) if positions else _no_headers,
            tuple(headers),
            info_at,
            shutdown_at,
            drops_at,
        )


class Decoder:
    """Decodes the inet_diag messages of one dump.

    Values that many sockets have in common are built once and shared -- they are immutable:
    addresses (a host has few of its own), the endpoint of each listening port (every accepted
    connection has it as its local end, every local client of it as its remote end), uids,
    and the times in tcp_info. At 300,000 sockets this saves about a third of the memory a
    fresh object per field takes.

    It decodes sockets as drafts: their owners are set afterwards, once the fd walk is done
    (:func:`collect`).
    """

    def __init__(self) -> None:
        self._ports = _port_table()
        self._addresses: dict[int, dict[bytes, IPAddress]] = {
            socket.AF_INET: {},
            socket.AF_INET6: {},
        }
        # listening port (plus 65536 for IPv6) -> packed address -> endpoint
        self._endpoints: dict[int, dict[bytes, Endpoint]] = {}
        self._cached_endpoints = 0
        self._ints: dict[int, int] = {}  # equal integers seen before, to share
        self._layouts: dict[int, _Layout] = {}  # by message length

    def address(self, family_code: int, packed: bytes) -> IPAddress:
        """The address in a 16-byte ``idiag_src``/``idiag_dst`` (IPv4 in the first four)."""
        cache = self._addresses[family_code]
        address = cache.get(packed)
        if address is None:
            if family_code == socket.AF_INET:
                address = ipaddress.IPv4Address(packed[:4])
            else:
                address = ipaddress.IPv6Address(packed)
            if len(cache) < _CACHE_LIMIT:
                cache[packed] = address
        return address

    def message(self, data: memoryview, start: int, end: int, where: str) -> Socket:
        """Decode the inet_diag_msg and its attributes in ``data[start:end]``, checking each
        attribute (:meth:`drafts` is the fast path for whole buffers)."""
        draft = self._message_walking_attributes(data, start, end, where)
        return draft.finish((), OwnerSource.UNKNOWN)

    def _message_walking_attributes(
        self, data: memoryview, start: int, end: int, where: str
    ) -> SocketDraft:
        """Decode one message attribute by attribute, checking each, and learn its layout."""
        if end - start < _MSG_SIZE:
            raise NetlinkError(where, f"inet_diag message of {end - start} bytes, need {_MSG_SIZE}")
        values = _MSG.unpack_from(data, start)
        tcp_info: TcpInfo | None = None
        shutdown: int | None = None
        drops: int | None = None
        attributes: list[tuple[int, int]] = []
        offset = start + _MSG_SIZE
        while offset + 4 <= end:
            length, kind = _RTATTR.unpack_from(data, offset)
            if length < 4 or offset + length > end:
                raise NetlinkError(where, f"attribute of length {length} runs past its message")
            attributes.append((length, kind))
            if kind == INET_DIAG_INFO:
                tcp_info = (
                    self._tcp_info(TCP_INFO_STRUCT.unpack_from(data, offset + 4))
                    if length - 4 >= TCP_INFO_STRUCT.size
                    else parse_tcp_info(data[offset + 4 : offset + length])
                )
            elif kind == INET_DIAG_SHUTDOWN and length >= 5:
                shutdown = data[offset + 4]
            elif kind == INET_DIAG_SKMEMINFO and length - 4 >= _SKMEM_DROPS_END:
                drops = struct.unpack_from("=I", data, offset + 4 + _SKMEM_DROPS_AT)[0]
            offset += (length + 3) & ~3
        sock = self._socket(values, tcp_info, shutdown, where)
        sock.drops = drops
        if offset == end and len(self._layouts) < _MAX_LAYOUTS:
            layout = _Layout.of(attributes)
            if layout is not None:
                self._layouts[end - start] = layout
        return sock

    def drafts(self, data: memoryview, where: str) -> tuple[list[SocketDraft], bool]:
        """Every socket in one buffer of netlink messages, owners not set yet, and whether
        NLMSG_DONE came.

        The hot loop of a run: at 300,000 sockets each Python call per message costs about
        0.1 s, so what :meth:`_tcp_info` and :meth:`_socket` do is written out here once
        more, for a message whose layout was learnt (:class:`_Layout`). Any other message is
        walked attribute by attribute, with every check (:meth:`_message_walking_attributes`),
        which teaches its layout for the next ones. tests/test_netlink.py decodes recorded
        replies both ways and compares every field.
        """
        drafts: list[SocketDraft] = []
        append = drafts.append
        layouts = self._layouts
        header = NLMSGHDR_HEAD.unpack_from
        ints = self._ints
        shared = ints.setdefault
        ports = self._ports
        address = self.address
        v4_addresses = self._addresses[_AF_INET]
        v6_addresses = self._addresses[_AF_INET6]
        endpoints = self._endpoints
        remember = self._remember
        states = _STATE_BY_CODE
        timers = _TIMER_BY_CODE
        listen, time_wait, syn_recv = TcpState.LISTEN, TcpState.TIME_WAIT, TcpState.SYN_RECV
        no_timer, keepalive, zero_window = (
            TimerKind.NONE,
            TimerKind.KEEPALIVE,
            TimerKind.ZERO_WINDOW_PROBE,
        )
        unknown_state, unknown_owner = TcpState.UNKNOWN, OwnerSource.UNKNOWN
        ipv4, ipv6 = Family.IPV4, Family.IPV6
        info_fields = len(TCP_INFO_FIELDS)
        new_draft = SocketDraft.__new__
        new_info = new_object = object.__new__
        endpoint_builder, endpoint_class = ENDPOINT_SLOTS_OF, Endpoint
        tcp_info_builder, tcp_info_class = TCP_INFO_SLOTS_OF, TcpInfo
        offset = 0
        end = len(data)
        while offset < end:
            if end - offset < _NLMSGHDR.size:
                raise NetlinkError(where, f"{end - offset} stray bytes after the last message")
            length, kind = header(data, offset)
            if length < _NLMSGHDR.size or offset + length > end:
                raise NetlinkError(where, f"message length {length} does not fit the reply")
            if kind != SOCK_DIAG_BY_FAMILY:
                if kind == NLMSG_DONE:
                    return drafts, True
                if kind == NLMSG_ERROR:
                    body = data[offset + _NLMSGHDR.size : offset + length]
                    code = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
                    raise NetlinkError(
                        where, f"kernel answered error {errno.errorcode.get(code, code)}"
                    )
                offset += (length + 3) & ~3
                continue
            start = offset + _NLMSGHDR.size
            offset += (length + 3) & ~3
            layout = layouts.get(length - _NLMSGHDR.size)
            if layout is None:
                append(self._message_walking_attributes(data, start, start + length - 16, where))
                continue
            values = layout.struct.unpack_from(data, start)
            if layout.headers_of(values) != layout.headers:
                append(self._message_walking_attributes(data, start, start + length - 16, where))
                continue
            (
                family_code,
                state_code,
                timer_code,
                retrans,
                sport,
                dport,
                src,
                dst,
                _interface,
                cookie_low,
                cookie_high,
                expires,
                rqueue,
                wqueue,
                uid,
                inode,
            ) = values[:16]
            if family_code == _AF_INET:
                family = ipv4
                endpoint_key = 0
                known_addresses = v4_addresses
            elif family_code == _AF_INET6:
                family = ipv6
                endpoint_key = 1 << 16
                known_addresses = v6_addresses
            else:
                raise NetlinkError(where, f"address family {family_code} in a TCP dump")
            sport = ports[sport]
            dport = ports[dport]
            state = states[state_code]
            timer = timers[timer_code]
            retransmits: int | None = retrans
            probes: int | None = None
            if timer is zero_window or timer is keepalive:
                retransmits, probes = None, retrans
            info_at = layout.info_at
            tcp_info: TcpInfo | None = None
            if info_at >= 0:
                # The fields of TCP_INFO_FIELDS, in its order (test_netlink checks the names).
                (
                    info_retransmits,
                    info_probes,
                    backoff,
                    rto,
                    unacked,
                    last_data_sent,
                    last_data_recv,
                    last_ack_recv,
                    rtt,
                    total_retrans,
                    busy_time,
                    rwnd_limited,
                    sndbuf_limited,
                ) = values[info_at : info_at + info_fields]
                if len(ints) < _CACHE_LIMIT:
                    rto = shared(rto, rto)
                    rtt = shared(rtt, rtt)
                    last_data_sent = shared(last_data_sent, last_data_sent)
                    last_data_recv = shared(last_data_recv, last_data_recv)
                    last_ack_recv = shared(last_ack_recv, last_ack_recv)
                # new_tcp_info(...) written out: the object made empty and its slots stored
                # here saves the call, as for the draft below.
                info = new_info(tcp_info_builder)
                info.last_data_recv_ms = last_data_recv
                info.last_data_sent_ms = last_data_sent
                info.last_ack_recv_ms = last_ack_recv
                info.retransmits = info_retransmits
                info.probes = info_probes
                info.backoff = backoff
                info.rto_us = rto
                info.rtt_us = rtt
                info.total_retrans = total_retrans
                info.unacked = unacked
                info.busy_time_us = busy_time
                info.rwnd_limited_us = rwnd_limited
                info.sndbuf_limited_us = sndbuf_limited
                info.__class__ = tcp_info_class
                tcp_info = info
                if not ((state is time_wait or state is syn_recv) and inode == 0):
                    retransmits = info_retransmits
                probes = info_probes
            if state is time_wait:
                retransmits = None
            is_listener = state is listen
            if is_listener:
                endpoints.setdefault(endpoint_key + sport, {})
            by_address = endpoints.get(endpoint_key + sport)
            local = None if by_address is None else by_address.get(src)
            if local is None:
                # self.address(), with its cache looked up here first
                known = known_addresses.get(src)
                # new_endpoint(...) written out, as the draft below
                local = new_object(endpoint_builder)
                local.address = address(family_code, src) if known is None else known
                local.port = sport
                local.name = None
                local.__class__ = endpoint_class
                if by_address is not None:
                    remember(by_address, src, local)
            by_address = endpoints.get(endpoint_key + dport)
            remote = None if by_address is None else by_address.get(dst)
            if remote is None:
                known = known_addresses.get(dst)
                remote = new_object(endpoint_builder)
                remote.address = address(family_code, dst) if known is None else known
                remote.port = dport
                remote.name = None
                remote.__class__ = endpoint_class
                if by_address is not None:
                    remember(by_address, dst, remote)
            shutdown_at = layout.shutdown_at
            drops_at = layout.drops_at
            # SocketDraft(...) written out: at 300,000 sockets the call with 22 arguments
            # costs about 0.07 s more than an empty draft with its slots stored here. Every
            # slot is stored (tests/test_netlink.py compares both decoders field by field).
            draft = new_draft(SocketDraft)
            draft.family = family
            draft.local = local
            draft.remote = remote
            draft.state = state
            # A listener's rqueue is its accept-queue length and wqueue its maximum backlog.
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
            draft.cookie = cookie_low | (cookie_high << 32)
            draft.tcp_info = tcp_info
            draft.shutdown = None if shutdown_at < 0 else values[shutdown_at]
            draft.truncated = False
            draft.netns = None  # set by the caller where it is known
            draft.drops = None if drops_at < 0 else values[drops_at]
            append(draft)
        return drafts, False

    def _tcp_info(self, values: tuple[int, ...]) -> TcpInfo:
        """A TcpInfo from the values of ``TCP_INFO_STRUCT``, in the order of
        ``TCP_INFO_FIELDS``. The times (ms since an event, the rto and rtt in us) are shared
        with equal ones already seen: idle sockets set up together repeat them, and each int is
        28 bytes."""
        (
            retransmits,
            probes,
            backoff,
            rto,
            unacked,
            last_data_sent,
            last_data_recv,
            last_ack_recv,
            rtt,
            total_retrans,
            busy_time,
            rwnd_limited,
            sndbuf_limited,
        ) = values
        ints = self._ints
        if len(ints) < _CACHE_LIMIT:
            shared = ints.setdefault
            rto = shared(rto, rto)
            rtt = shared(rtt, rtt)
            last_data_sent = shared(last_data_sent, last_data_sent)
            last_data_recv = shared(last_data_recv, last_data_recv)
            last_ack_recv = shared(last_ack_recv, last_ack_recv)
        return new_tcp_info(
            last_data_recv,
            last_data_sent,
            last_ack_recv,
            retransmits,
            probes,
            backoff,
            rto,
            rtt,
            total_retrans,
            unacked,
            busy_time,
            rwnd_limited,
            sndbuf_limited,
        )

    def _socket(
        self, values: tuple[Any, ...], tcp_info: TcpInfo | None, shutdown: int | None, where: str
    ) -> SocketDraft:
        """The socket from the inet_diag_msg fields (``values``, in ``_MSG`` order; more may
        follow) and what its attributes said."""
        (
            family_code,
            state_code,
            timer_code,
            retrans,
            sport,
            dport,
            src,
            dst,
            _interface,
            cookie_low,
            cookie_high,
            expires,
            rqueue,
            wqueue,
            uid,
            inode,
        ) = values[:16]
        if family_code == _AF_INET:
            family = Family.IPV4
            endpoint_key = 0
        elif family_code == _AF_INET6:
            family = Family.IPV6
            endpoint_key = 1 << 16
        else:
            raise NetlinkError(where, f"address family {family_code} in a TCP dump")
        sport = self._ports[sport]
        dport = self._ports[dport]

        state = _STATE_BY_CODE[state_code]
        timer = _TIMER_BY_CODE[timer_code]
        is_listener = state is TcpState.LISTEN
        is_time_wait = state is TcpState.TIME_WAIT
        retransmits: int | None = retrans
        probes: int | None = None
        if timer is TimerKind.ZERO_WINDOW_PROBE or timer is TimerKind.KEEPALIVE:
            # inet_diag reports the probe count in the retrans byte for these timers.
            retransmits, probes = None, retrans
        if tcp_info is not None:
            mini = (is_time_wait or state is TcpState.SYN_RECV) and inode == 0
            if not mini:
                retransmits = tcp_info.retransmits
            probes = tcp_info.probes
        if is_time_wait:
            retransmits = None

        # Endpoints: shared for the ports something listens on (the dump lists listeners
        # first), built afresh for the rest.
        endpoints = self._endpoints
        if is_listener:
            endpoints.setdefault(endpoint_key + sport, {})
        by_address = endpoints.get(endpoint_key + sport)
        local = None if by_address is None else by_address.get(src)
        if local is None:
            local = new_endpoint(self.address(family_code, src), sport)
            if by_address is not None:
                self._remember(by_address, src, local)
        by_address = endpoints.get(endpoint_key + dport)
        remote = None if by_address is None else by_address.get(dst)
        if remote is None:
            remote = new_endpoint(self.address(family_code, dst), dport)
            if by_address is not None:
                self._remember(by_address, dst, remote)

        # Every field of Socket, in its order; the owners are set by finish().
        return SocketDraft(
            family,
            local,
            remote,
            state,
            # A listener's rqueue is its accept-queue length and wqueue its maximum backlog.
            None if is_listener else wqueue,  # send_queue
            rqueue,  # recv_queue
            wqueue if is_listener else None,  # listen_backlog
            timer,
            None if timer is TimerKind.NONE else expires / 1000,  # timer_seconds
            retransmits,
            probes,
            None if is_time_wait else self._ints.setdefault(uid, uid),  # uid
            inode,
            (),  # pids
            OwnerSource.UNKNOWN,  # owner_source
            f"{state_code:02X}" if state is TcpState.UNKNOWN else None,  # raw_state
            cookie_low | (cookie_high << 32),  # cookie
            tcp_info,
            shutdown,
            False,  # truncated
        )

    def _remember(
        self, by_address: dict[bytes, Endpoint], packed: bytes, endpoint: Endpoint
    ) -> None:
        if self._cached_endpoints < _CACHE_LIMIT:
            by_address[packed] = endpoint
            self._cached_endpoints += 1


_INODE = operator.attrgetter("inode")


def _finish_all(
    drafts: list[SocketDraft], owners: background_scan.Owners | None
) -> owners_module.Sorted | None:
    """Finish every draft in place (each draft object becomes its Socket) with the owners the
    fd walk found for its inode, in the drafts' order, and how we know them -- the rule of
    :func:`tcphealth.sources.procfs.owner_fields`, written out for the loop over every socket
    of a run. Without owners (no walk), every socket's owners are unknown.

    With owners, the same loop notes what :func:`procfs.assemble` would otherwise pass over
    every socket again to find (:class:`~tcphealth.sources.owners.Sorted`): the listeners, the
    sockets their listener may be credited with, and those no process we read holds."""
    if owners is None:
        for draft in drafts:
            draft.finish((), OwnerSource.UNKNOWN)
        return None
    groups = owners.groups
    held, unseen, nobody = OwnerSource.FD, OwnerSource.UNSEEN, OwnerSource.NONE
    listen, unaccepted_states = TcpState.LISTEN, owners_module.UNACCEPTED_STATES
    listeners: list[Socket] = []
    unaccepted: list[int] = []
    not_seen: list[Socket] = []
    finished = Socket
    for position, (draft, group) in enumerate(zip(drafts, owners.index, strict=True)):
        # draft.finish(), written out: one call fewer per socket
        if not draft.inode:
            draft.pids, draft.owner_source = (), nobody
            if draft.state in unaccepted_states:
                unaccepted.append(position)
        elif group:
            draft.pids, draft.owner_source = groups[group], held
        else:
            draft.pids, draft.owner_source = (), unseen
            not_seen.append(draft)  # type: ignore[arg-type]  # a Socket once its class is set
        if draft.state is listen:
            listeners.append(draft)  # type: ignore[arg-type]
        draft.__class__ = finished  # type: ignore[assignment]
    return owners_module.Sorted(listeners, unaccepted, not_seen)


_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
# Kernel state and timer codes are one byte each: look them up by index.
_STATE_BY_CODE = [state_from_kernel_code(code) for code in range(256)]
_TIMER_BY_CODE = [timer_from_kernel_code(code) for code in range(256)]


def parse_messages(
    data: bytes | memoryview, where: str, decoder: Decoder | None = None
) -> tuple[list[Socket], bool]:
    """Decode one buffer of netlink messages. Returns the sockets and whether NLMSG_DONE came."""
    drafts, done = (decoder or Decoder()).drafts(memoryview(data), where)
    return [draft.finish((), OwnerSource.UNKNOWN) for draft in drafts], done


def _open() -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as error:  # AttributeError: no AF_NETLINK off Linux
        raise NetlinkUnavailable(str(error)) from None


def _where(family: Family) -> str:
    return f"netlink sock_diag ({family.value})"


def _address_family(family: Family) -> int:
    return socket.AF_INET if family is Family.IPV4 else socket.AF_INET6


def _received(family: Family, with_tcp_info: bool, timeout: float) -> Iterator[memoryview]:
    """The datagrams of one family's dump, received here; each is valid until the next."""
    request = build_request(_address_family(family), 1, with_tcp_info=with_tcp_info)
    with _open() as channel:
        yield from _failures_raised(
            _where(family), dump_relay.receive(channel, request, RECEIVE_BUFFER, timeout)
        )


def _relayed(relay: dump_relay.Relay, number: int, family: Family) -> Iterator[memoryview]:
    """The messages of one family's dump, received by the relay's child (request
    ``number``)."""
    return _failures_raised(_where(family), relay.dump(number))


BOTH_FAMILIES = "netlink sock_diag (IPv4 and IPv6)"


def _received_of_both(timeout: float) -> Iterator[memoryview]:
    """The datagrams of one dump of both families (:func:`build_request_of_both`), received
    here; each is valid until the next."""
    request = build_request_of_both(1, with_tcp_info=True)
    with _open() as channel:
        yield from _failures_raised(
            BOTH_FAMILIES, dump_relay.receive(channel, request, RECEIVE_BUFFER, timeout)
        )


def _relayed_of_both(relay: dump_relay.Relay, number: int) -> Iterator[memoryview]:
    """:func:`_received_of_both`, received by the relay's child (request ``number``)."""
    return _failures_raised(BOTH_FAMILIES, relay.dump(number))


def _failures_raised(where: str, chunks: Iterator[memoryview]) -> Iterator[memoryview]:
    """``chunks``, with a failure to receive them raised as this module's errors: an errno as
    OSError (which :func:`_dump_each_family` judges), anything else as NetlinkError."""
    try:
        yield from chunks
    except dump_relay.ReceiveFailed as failure:
        if failure.errno:
            raise OSError(failure.errno, failure.text) from None
        raise NetlinkError(where, failure.text) from None


def _decode_into(drafts: list[SocketDraft], family: Family, chunks: Iterator[memoryview]) -> None:
    """Decode one family's dump, chunk by chunk as it comes, onto ``drafts``."""
    where = _where(family)
    decoder = Decoder()
    for chunk in chunks:
        found, done = decoder.drafts(chunk, where)
        drafts.extend(found)
        if done:
            return
    raise NetlinkError(where, "the dump ended without NLMSG_DONE")


def available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        _open().close()
    except NetlinkUnavailable:
        return False
    return True


def collect(
    proc_root: Path = Path("/proc"), *, with_processes: bool = True, with_tcp_info: bool = True
) -> Snapshot:
    """Look at this host's network namespace through netlink; owners, processes, sysctls and
    counters still come from /proc.

    Up to three processes share the work (each child where it can be forked): one child
    receives the dump from the kernel (:mod:`.dump_relay`), another walks /proc/*/fd
    (:mod:`.background_scan`), and this one decodes the dump as it arrives; each socket is
    finished with its owners once all are done. A socket opened or closed while they run may
    show as held by no visible process, as with ``ss -p``, which walks first and dumps after."""
    taken_at = time.time()
    requests = [
        build_request(_address_family(family), 1, with_tcp_info=with_tcp_info)
        for family in _FAMILIES
    ]
    with contextlib.ExitStack() as stack:
        # The relay first: the walking child, forked after it, then knows its pid to skip,
        # and holds no copy of the relay's pipe.
        relay = stack.enter_context(
            dump_relay.started(requests, buffer_size=RECEIVE_BUFFER, timeout=DUMP_TIMEOUT)
        )
        pending: background_scan.PendingScan | None = None
        if with_processes:
            helpers = () if relay is None or relay.pid is None else (relay.pid,)
            pending = stack.enter_context(background_scan.started(proc_root, helpers))
        with gcpause.paused():
            drafts = _dump_both_families(with_tcp_info, relay)
            scan = found = None
            if pending is None:
                _finish_all(drafts, None)
            else:
                owners = pending.owners(array("Q", map(_INODE, drafts)))
                scan = owners.scan
                found = _finish_all(drafts, owners)
                del owners
            sockets = cast(list[Socket], drafts)
            del drafts
    return procfs.assemble(
        sockets,
        [],
        proc_root,
        taken_at=taken_at,
        source="netlink",
        with_processes=with_processes,
        scan=scan,
        found=found,
    )


def _dump_both_families(
    with_tcp_info: bool, relay: dump_relay.Relay | None = None
) -> list[SocketDraft]:
    """Every socket of both families: relayed by ``relay``'s child if there is one, else (or
    when the child stops before the end) received here."""
    if relay is not None:
        try:
            return _dump_each_family(lambda number, family: _relayed(relay, number, family))
        except dump_relay.RelayLost:
            pass  # start again here; the child's answers so far are dropped with it
    return _dump_each_family(lambda _, family: _received(family, with_tcp_info, DUMP_TIMEOUT))


def _dump_each_family(
    chunks_of: Callable[[int, Family], Iterator[memoryview]],
) -> list[SocketDraft]:
    drafts: list[SocketDraft] = []
    for number, family in enumerate(_FAMILIES):
        try:
            _decode_into(drafts, family, chunks_of(number, family))
        except OSError as error:
            if family is Family.IPV6 and error.errno == errno.EAFNOSUPPORT:
                continue  # a kernel without IPv6
            raise NetlinkError(_where(family), str(error)) from None
    return drafts
