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

import errno
import ipaddress
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tcphealth.errors import InputError
from tcphealth.model import (
    Endpoint,
    Family,
    IPAddress,
    Snapshot,
    Socket,
    TcpInfo,
    TcpState,
    TimerKind,
    state_from_kernel_code,
    timer_from_kernel_code,
)
from tcphealth.sources import procfs

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_INFO = 2
INET_DIAG_SHUTDOWN = 8
ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then sockid
_REQUEST = struct.Struct("=BBBxI")
# inet_diag_sockid: sport, dport (big-endian), src[16], dst[16], if, cookie[2] (host order)
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# inet_diag_msg head and tail around the sockid
_MSG_HEAD = struct.Struct("=BBBB")
_MSG_TAIL = struct.Struct("=IIIII")  # expires (ms), rqueue, wqueue, uid, inode
_MSG_SIZE = _MSG_HEAD.size + _SOCKID.size + _SOCKID_TAIL.size + _MSG_TAIL.size  # 72
_RTATTR = struct.Struct("=HH")

# struct tcp_info offsets (include/uapi/linux/tcp.h); older kernels send a shorter struct.
_TCPI_BYTES = struct.Struct("=BBBBB")  # state, ca_state, retransmits, probes, backoff
_TCPI_RTO = 8
_TCPI_UNACKED = 24
_TCPI_LAST_DATA_SENT = 44
_TCPI_LAST_DATA_RECV = 52
_TCPI_LAST_ACK_RECV = 56
_TCPI_RTT = 68
_TCPI_TOTAL_RETRANS = 100
_U32 = struct.Struct("=I")

RECEIVE_BUFFER = 1 << 20


class NetlinkError(InputError):
    """The kernel's reply could not be read: truncated, malformed, or an error answer."""


class NetlinkUnavailable(Exception):
    """This kernel (or this sandbox) does not offer NETLINK_SOCK_DIAG."""


def build_request(family: int, sequence: int, *, with_tcp_info: bool) -> bytes:
    extensions = 1 << (INET_DIAG_SHUTDOWN - 1)
    if with_tcp_info:
        extensions |= 1 << (INET_DIAG_INFO - 1)
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, extensions, ALL_STATES)
    body += bytes(_SOCKID.size + _SOCKID_TAIL.size)  # match any socket
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + body


def _address(raw: bytes, family: Family) -> IPAddress:
    if family is Family.IPV4:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw)


def parse_tcp_info(data: memoryview) -> TcpInfo:
    """Read the fields we use from a ``struct tcp_info`` of any kernel's length."""

    def u32(offset: int) -> int | None:
        if len(data) < offset + 4:
            return None
        return int(_U32.unpack_from(data, offset)[0])

    if len(data) < _TCPI_BYTES.size:
        return TcpInfo()
    _, _, retransmits, probes, backoff = _TCPI_BYTES.unpack_from(data, 0)
    return TcpInfo(
        last_data_recv_ms=u32(_TCPI_LAST_DATA_RECV),
        last_data_sent_ms=u32(_TCPI_LAST_DATA_SENT),
        last_ack_recv_ms=u32(_TCPI_LAST_ACK_RECV),
        retransmits=retransmits,
        probes=probes,
        backoff=backoff,
        rto_us=u32(_TCPI_RTO),
        rtt_us=u32(_TCPI_RTT),
        total_retrans=u32(_TCPI_TOTAL_RETRANS),
        unacked=u32(_TCPI_UNACKED),
    )


def parse_diag_message(payload: memoryview, where: str) -> Socket:
    """Decode one inet_diag_msg and its attributes."""
    if len(payload) < _MSG_SIZE:
        raise NetlinkError(where, f"inet_diag message of {len(payload)} bytes, need {_MSG_SIZE}")
    family_code, state_code, timer_code, retrans = _MSG_HEAD.unpack_from(payload, 0)
    if family_code == socket.AF_INET:
        family = Family.IPV4
    elif family_code == socket.AF_INET6:
        family = Family.IPV6
    else:
        raise NetlinkError(where, f"address family {family_code} in a TCP dump")
    sport, dport, src, dst = _SOCKID.unpack_from(payload, 4)
    _, cookie_low, cookie_high = _SOCKID_TAIL.unpack_from(payload, 4 + _SOCKID.size)
    expires, rqueue, wqueue, uid, inode = _MSG_TAIL.unpack_from(payload, _MSG_SIZE - 20)

    tcp_info: TcpInfo | None = None
    shutdown: int | None = None
    offset = (_MSG_SIZE + 3) & ~3
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size or offset + length > len(payload):
            raise NetlinkError(where, f"attribute of length {length} runs past its message")
        value = payload[offset + _RTATTR.size : offset + length]
        if kind == INET_DIAG_INFO:
            tcp_info = parse_tcp_info(value)
        elif kind == INET_DIAG_SHUTDOWN and len(value) >= 1:
            shutdown = value[0]
        offset += (length + 3) & ~3

    state = state_from_kernel_code(state_code)
    timer = timer_from_kernel_code(timer_code)
    is_listener = state is TcpState.LISTEN
    mini = state in (TcpState.TIME_WAIT, TcpState.SYN_RECV) and inode == 0
    retransmits: int | None = retrans
    probes: int | None = None
    if timer in (TimerKind.ZERO_WINDOW_PROBE, TimerKind.KEEPALIVE):
        # inet_diag reports the probe count in the retrans byte for these timers.
        retransmits, probes = None, retrans
    if tcp_info is not None:
        retransmits = tcp_info.retransmits if not mini else retransmits
        probes = tcp_info.probes
    if state is TcpState.TIME_WAIT:
        retransmits = None
    return Socket(
        family=family,
        local=Endpoint(_address(src, family), sport),
        remote=Endpoint(_address(dst, family), dport),
        state=state,
        # A listener's rqueue is its accept-queue length and wqueue its maximum backlog.
        send_queue=None if is_listener else wqueue,
        recv_queue=rqueue,
        listen_backlog=wqueue if is_listener else None,
        timer=timer,
        timer_seconds=None if timer is TimerKind.NONE else expires / 1000,
        retransmits=retransmits,
        probes=probes,
        uid=None if state is TcpState.TIME_WAIT else uid,
        inode=inode,
        raw_state=f"{state_code:02X}" if state is TcpState.UNKNOWN else None,
        cookie=cookie_low | (cookie_high << 32),
        tcp_info=tcp_info,
        shutdown=shutdown,
    )


def parse_messages(data: bytes | memoryview, where: str) -> tuple[list[Socket], bool]:
    """Decode one buffer of netlink messages. Returns the sockets and whether NLMSG_DONE came."""
    view = memoryview(data)
    sockets: list[Socket] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < _NLMSGHDR.size:
            raise NetlinkError(where, f"{len(view) - offset} stray bytes after the last message")
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(view, offset)
        if length < _NLMSGHDR.size or offset + length > len(view):
            raise NetlinkError(where, f"message length {length} does not fit the reply")
        body = view[offset + _NLMSGHDR.size : offset + length]
        if kind == NLMSG_DONE:
            return sockets, True
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
            raise NetlinkError(where, f"kernel answered error {errno.errorcode.get(code, code)}")
        if kind == SOCK_DIAG_BY_FAMILY:
            sockets.append(parse_diag_message(body, where))
        offset += (length + 3) & ~3
    return sockets, False


def _open() -> socket.socket:
    try:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except (OSError, AttributeError) as error:  # AttributeError: no AF_NETLINK off Linux
        raise NetlinkUnavailable(str(error)) from None


def dump(family: Family, *, with_tcp_info: bool = True, timeout: float = 10.0) -> Iterator[Socket]:
    """Every TCP socket of one family in this network namespace."""
    where = f"netlink sock_diag ({family.value})"
    address_family = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    with _open() as channel:
        channel.settimeout(timeout)
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        channel.sendto(build_request(address_family, 1, with_tcp_info=with_tcp_info), (0, 0))
        buffer = bytearray(RECEIVE_BUFFER)
        while True:
            try:
                size = channel.recv_into(buffer)
            except TimeoutError:
                raise NetlinkError(where, f"no end of dump after {timeout} s") from None
            if size == 0:
                raise NetlinkError(where, "the kernel closed the channel before the dump ended")
            sockets, done = parse_messages(memoryview(buffer)[:size], where)
            yield from sockets
            if done:
                return


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
    counters still come from /proc."""
    taken_at = time.time()
    sockets: list[Socket] = []
    for family in (Family.IPV4, Family.IPV6):
        try:
            sockets.extend(dump(family, with_tcp_info=with_tcp_info))
        except OSError as error:
            if family is Family.IPV6 and error.errno == errno.EAFNOSUPPORT:
                continue  # a kernel without IPv6
            raise NetlinkError(f"netlink sock_diag ({family.value})", str(error)) from None
    return procfs.assemble(
        sockets,
        [],
        proc_root,
        taken_at=taken_at,
        source="netlink",
        with_processes=with_processes,
    )
