"""The plain data every layer of tcphealth passes along.

Collectors produce a :class:`Snapshot`; the diagnosis turns it into :class:`Finding` values;
the report and the renderers only read these. This module imports nothing else of ours, so any
layer may depend on it without creating a cycle.

Convention: a field whose value the source could not know is ``None`` -- never ``0``. A copy of
/proc has no listener backlog, psutil has no queues, a TIME_WAIT row carries no uid; each of
these is ``None`` so that the diagnosis can say "not checked" instead of reasoning from a fake
zero.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(enum.StrEnum):
    """Address family of a socket, as the kernel table it came from says."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"


class TcpState(enum.StrEnum):
    """The eleven TCP states under one canonical spelling each (Linux netstat's).

    BOUND_INACTIVE (kernel code 0x0D, a socket bound but neither listening nor connecting) and
    UNKNOWN (a code or word we do not recognise) are kept apart so that nothing is silently
    folded into a real state.
    """

    ESTABLISHED = "ESTABLISHED"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    FIN_WAIT1 = "FIN_WAIT1"
    FIN_WAIT2 = "FIN_WAIT2"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    BOUND_INACTIVE = "BOUND_INACTIVE"
    UNKNOWN = "UNKNOWN"


# The eleven states of RFC 793 as Linux names them; BOUND_INACTIVE and UNKNOWN are not in it.
TCP_STATES: tuple[TcpState, ...] = (
    TcpState.ESTABLISHED,
    TcpState.SYN_SENT,
    TcpState.SYN_RECV,
    TcpState.FIN_WAIT1,
    TcpState.FIN_WAIT2,
    TcpState.TIME_WAIT,
    TcpState.CLOSE,
    TcpState.CLOSE_WAIT,
    TcpState.LAST_ACK,
    TcpState.LISTEN,
    TcpState.CLOSING,
)

# include/net/tcp_states.h. 0x0C (TCP_NEW_SYN_RECV) is the request socket of a connection in
# its handshake; user space (ss, netstat) shows it as SYN_RECV, and so do we.
_KERNEL_CODES: dict[int, TcpState] = {
    0x01: TcpState.ESTABLISHED,
    0x02: TcpState.SYN_SENT,
    0x03: TcpState.SYN_RECV,
    0x04: TcpState.FIN_WAIT1,
    0x05: TcpState.FIN_WAIT2,
    0x06: TcpState.TIME_WAIT,
    0x07: TcpState.CLOSE,
    0x08: TcpState.CLOSE_WAIT,
    0x09: TcpState.LAST_ACK,
    0x0A: TcpState.LISTEN,
    0x0B: TcpState.CLOSING,
    0x0C: TcpState.SYN_RECV,
    0x0D: TcpState.BOUND_INACTIVE,
}

# Every spelling another tool prints, folded to upper case with '-' turned into '_'.
# ss: ESTAB SYN-SENT SYN-RECV FIN-WAIT-1 FIN-WAIT-2 TIME-WAIT UNCONN CLOSE-WAIT LAST-ACK LISTEN
#     CLOSING; Linux netstat: the canonical names; BSD/macOS: SYN_RCVD, FIN_WAIT_1, CLOSED;
# Windows: LISTENING, SYN_RECEIVED, DELETE_TCB, BOUND (Get-NetTCPConnection); psutil: NONE.
_SPELLINGS: dict[str, TcpState] = {
    "ESTAB": TcpState.ESTABLISHED,
    "ESTABLISHED": TcpState.ESTABLISHED,
    "SYN_SENT": TcpState.SYN_SENT,
    "SYN_RECV": TcpState.SYN_RECV,
    "SYN_RCVD": TcpState.SYN_RECV,
    "SYN_RECEIVED": TcpState.SYN_RECV,
    "NEW_SYN_RECV": TcpState.SYN_RECV,
    "FIN_WAIT1": TcpState.FIN_WAIT1,
    "FIN_WAIT_1": TcpState.FIN_WAIT1,
    "FIN_WAIT2": TcpState.FIN_WAIT2,
    "FIN_WAIT_2": TcpState.FIN_WAIT2,
    "TIME_WAIT": TcpState.TIME_WAIT,
    "TIMEWAIT": TcpState.TIME_WAIT,
    "CLOSE": TcpState.CLOSE,
    "CLOSED": TcpState.CLOSE,
    "UNCONN": TcpState.CLOSE,
    # psutil reports NONE for a socket with no TCP state to show and Windows DELETE_TCB for a
    # control block being torn down: both are, for diagnosis, a closed socket.
    "NONE": TcpState.CLOSE,
    "DELETE_TCB": TcpState.CLOSE,
    "CLOSE_WAIT": TcpState.CLOSE_WAIT,
    "CLOSEWAIT": TcpState.CLOSE_WAIT,
    "LAST_ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "LISTENING": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
    "BOUND_INACTIVE": TcpState.BOUND_INACTIVE,
    "BOUND": TcpState.BOUND_INACTIVE,
    "UNKNOWN": TcpState.UNKNOWN,
}


def state_from_kernel_code(code: int) -> TcpState:
    """Map the kernel's numeric state (the ``st`` column of /proc/net/tcp) to a state.

    >>> state_from_kernel_code(0x08)
    <TcpState.CLOSE_WAIT: 'CLOSE_WAIT'>
    >>> state_from_kernel_code(0x42)
    <TcpState.UNKNOWN: 'UNKNOWN'>
    """
    return _KERNEL_CODES.get(code, TcpState.UNKNOWN)


def parse_state(text: str) -> TcpState | None:
    """Map any tool's spelling of a state to the canonical one; ``None`` if it is no state.

    Case, surrounding blanks, and '-' versus '_' do not matter: ``ESTAB``, ``fin-wait-1``,
    ``FIN_WAIT_1`` and ``SYN_RCVD`` are all understood.
    """
    key = text.strip().upper().replace("-", "_").replace(" ", "_")
    return _SPELLINGS.get(key)


# The spellings without their separators: PowerShell's Get-NetTCPConnection writes FinWait2,
# SynReceived, DeleteTcb; people type finwait2 and timewait.
_SQUEEZED: dict[str, TcpState] = {key.replace("_", ""): state for key, state in _SPELLINGS.items()}
_HEX_CODE = re.compile(r"(?:0X)?([0-9A-F]{1,2})")


def state_asked_for(text: str) -> TcpState | None:
    """A state as a person asks for it (``--state``, ``explain``): every spelling
    :func:`parse_state` reads, the same without separators (``finwait2``, ``TimeWait``), and the
    kernel's number as /proc/net/tcp shows it (``06``, ``0A``, ``0x0a``). ``None`` if none.

    Only for what a person types: a parser of another tool's output must not take a number in
    a column for a state."""
    state = parse_state(text)
    if state is not None:
        return state
    key = text.strip().upper().replace("-", "").replace("_", "").replace(" ", "")
    if key in _SQUEEZED:
        return _SQUEEZED[key]
    code = _HEX_CODE.fullmatch(key)
    if code is not None:
        return _KERNEL_CODES.get(int(code.group(1), 16))
    return None


class TimerKind(enum.StrEnum):
    """The ``tr`` column of /proc/net/tcp (and ss's ``timer:(NAME,…)``)."""

    NONE = "none"  # 0: no timer pending
    RETRANSMIT = "retransmit"  # 1: retransmission or tail-loss probe (ss: "on")
    KEEPALIVE = "keepalive"  # 2: keepalive, or the generic socket timer
    TIME_WAIT = "timewait"  # 3: TIME_WAIT expiry, also used by orphaned FIN_WAIT2
    ZERO_WINDOW_PROBE = "probe"  # 4: zero-window probe (ss: "persist")
    UNKNOWN = "unknown"


_TIMER_CODES: dict[int, TimerKind] = {
    0: TimerKind.NONE,
    1: TimerKind.RETRANSMIT,
    2: TimerKind.KEEPALIVE,
    3: TimerKind.TIME_WAIT,
    4: TimerKind.ZERO_WINDOW_PROBE,
}


def timer_from_kernel_code(code: int) -> TimerKind:
    return _TIMER_CODES.get(code, TimerKind.UNKNOWN)


class OwnerSource(enum.StrEnum):
    """How the pids of a socket were found -- or why there are none."""

    FD = "fd"  # a /proc/PID/fd entry links to the socket's inode
    LISTENER = "listener"  # inode 0, attributed to the listener on the same local address:port
    NONE = "none"  # nobody holds it: inode 0 (TIME_WAIT, orphans) with no listener to credit
    UNSEEN = "unseen"  # it has an inode but no process we could read holds it
    UNKNOWN = "unknown"  # the source says nothing about owners (e.g. a /proc/net/tcp copy)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address and port. IPv6 stays IPv6; a v4-mapped address (``::ffff:a.b.c.d``) is kept
    as the kernel reported it and recognised by :attr:`ipv4_mapped`.

    ``port`` is ``None`` where the source lost it (``*`` in netstat output, a truncated field).
    ``name`` is the host as a paste printed it where that was no address -- a host name
    (netstat without ``-n``), a mask (``XX.XX.XX.XX``), a placeholder; ``address`` is then
    only the family's unspecified address, standing for "not known", and the endpoint is not
    a wildcard.
    """

    address: IPAddress
    port: int | None
    name: str | None = None

    @property
    def ipv4_mapped(self) -> ipaddress.IPv4Address | None:
        if isinstance(self.address, ipaddress.IPv6Address):
            return self.address.ipv4_mapped
        return None

    @property
    def is_unspecified(self) -> bool:
        return self.name is None and self.address.is_unspecified

    def __hash__(self) -> int:
        # Equal endpoints have equal addresses, hence equal integer values: the same hash as
        # before in effect, but without ipaddress's own __hash__, which formats the address as
        # hex text on every call (most of the time the report spent grouping 300,000 sockets).
        # ``_ip`` is that integer as ipaddress stores it (what its __int__ returns): read
        # directly, it saves a Python call per hash, and rules hash an endpoint per socket.
        return hash((self.address._ip, self.port))  # type: ignore[union-attr]

    def __str__(self) -> str:
        port = "*" if self.port is None else str(self.port)
        if self.name is not None:
            return f"{self.name}:{port}"
        if isinstance(self.address, ipaddress.IPv6Address):
            return f"[{format_address(self.address)}]:{port}"
        return f"{self.address}:{port}"


def format_address(address: IPAddress) -> str:
    """The address as ss prints it: a v4-mapped IPv6 address keeps its dotted tail
    (``::ffff:127.0.0.1``), which Python 3.11's ``str()`` would write as ``::ffff:7f00:1``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """Fields of the kernel's ``struct tcp_info`` (netlink sources only). Times in ms except
    where named ``_us``."""

    last_data_recv_ms: int | None = None
    last_data_sent_ms: int | None = None
    last_ack_recv_ms: int | None = None
    retransmits: int | None = None
    probes: int | None = None
    backoff: int | None = None
    rto_us: int | None = None
    rtt_us: int | None = None
    total_retrans: int | None = None
    unacked: int | None = None
    # Where a sender's time went (kernel 4.10+; us): busy sending at all, and within that held
    # back by the peer's advertised window or by this socket's own send buffer.
    busy_time_us: int | None = None
    rwnd_limited_us: int | None = None
    sndbuf_limited_us: int | None = None


@dataclass(frozen=True, slots=True)
class Socket:
    """One TCP socket as the kernel listed it.

    For a LISTEN socket ``recv_queue`` is the current accept-queue length and ``listen_backlog``
    its maximum (known only from netlink or ``ss``). For other sockets the queues are bytes:
    ``send_queue`` sent but not acknowledged plus not yet sent, ``recv_queue`` received but not
    read by the application (the peer's FIN counts as one byte).
    """

    family: Family
    local: Endpoint
    remote: Endpoint
    state: TcpState
    send_queue: int | None = None
    recv_queue: int | None = None
    listen_backlog: int | None = None
    timer: TimerKind | None = None
    timer_seconds: float | None = None  # time left until the timer fires
    retransmits: int | None = None  # consecutive unrecovered retransmission timeouts
    probes: int | None = None  # unanswered keepalive / zero-window probes
    uid: int | None = None
    inode: int | None = None
    pids: tuple[int, ...] = ()
    owner_source: OwnerSource = OwnerSource.UNKNOWN
    raw_state: str | None = None  # what the source printed, when it mapped to UNKNOWN
    cookie: int | None = None
    tcp_info: TcpInfo | None = None
    # sk_shutdown bits from netlink: 1 = receive side shut (e.g. CLOSE_WAIT after the peer's
    # FIN), 2 = send side shut (e.g. an owned FIN_WAIT2 after shutdown(SHUT_WR)).
    shutdown: int | None = None
    # The source cut this socket's printed address or port short (macOS netstat keeps 18
    # characters, Linux netstat 23 without -W): ``local``/``remote`` hold what was printed, a
    # possibly wrong prefix, so a port here must not be taken as certain.
    truncated: bool = False
    # The inode of the network namespace the socket was dumped in (``ip netns identify``,
    # ``readlink /proc/PID/ns/net``); None where the source does not say. Two sockets with the
    # same endpoints in two namespaces are two sockets.
    netns: int | None = None
    # Segments the kernel dropped on arrival at this socket since it opened (skmem's ``d``,
    # sk_drops: a full receive buffer or backlog, data beyond the advertised window); netlink
    # only, None where the source does not say.
    drops: int | None = None

    @property
    def is_orphan(self) -> bool | None:
        """True when no file descriptor holds the socket; None when the source cannot tell."""
        if self.inode is None:
            return None
        return self.inode == 0


# ---------------------------------------------------------------------------------------------
# Fast construction, for sources that build hundreds of thousands of sockets.
#
# A frozen dataclass's __init__ sets every field through object.__setattr__ (about 0.1 us a
# field: 2-3 us for a Socket). Each builder below is a plain class with the same slots in the
# same order; its __init__ stores the fields directly, and the object then becomes the model
# class by __class__ assignment, which CPython allows between classes of identical layout.
# The result is an ordinary, frozen instance of the model class -- equal, hashing and
# printing as one made by its constructor -- built in a fifth of the time. The builders take
# every field, positionally, in declaration order; tests/test_model_builders.py checks that
# they stay in step with the dataclasses. new_endpoint and new_tcp_info turn the object into
# the model class at the end of __init__ itself, so building one is one Python call.
#
# A SocketDraft is a socket whose owners are not known yet (the netlink source decodes while
# another process walks /proc/*/fd): mutable until SocketDraft.finish() makes it a Socket.


class _EndpointBuilder:
    __slots__ = Endpoint.__slots__

    def __init__(self, address: IPAddress, port: int | None, name: str | None = None) -> None:
        self.address = address
        self.port = port
        self.name = name
        self.__class__ = Endpoint  # type: ignore[assignment]


class _TcpInfoBuilder:
    __slots__ = TcpInfo.__slots__

    def __init__(
        self,
        last_data_recv_ms: int | None,
        last_data_sent_ms: int | None,
        last_ack_recv_ms: int | None,
        retransmits: int | None,
        probes: int | None,
        backoff: int | None,
        rto_us: int | None,
        rtt_us: int | None,
        total_retrans: int | None,
        unacked: int | None,
        busy_time_us: int | None = None,
        rwnd_limited_us: int | None = None,
        sndbuf_limited_us: int | None = None,
    ) -> None:
        self.last_data_recv_ms = last_data_recv_ms
        self.last_data_sent_ms = last_data_sent_ms
        self.last_ack_recv_ms = last_ack_recv_ms
        self.retransmits = retransmits
        self.probes = probes
        self.backoff = backoff
        self.rto_us = rto_us
        self.rtt_us = rtt_us
        self.total_retrans = total_retrans
        self.unacked = unacked
        self.busy_time_us = busy_time_us
        self.rwnd_limited_us = rwnd_limited_us
        self.sndbuf_limited_us = sndbuf_limited_us
        self.__class__ = TcpInfo  # type: ignore[assignment]


# Calling a builder class gives the object its __init__ turned into: one Python call per
# object. (A builder's own type is never seen outside its __init__.)
new_endpoint: Callable[[IPAddress, int | None], Endpoint] = _EndpointBuilder  # type: ignore[assignment]
# Every field of TcpInfo, positionally, in declaration order.
new_tcp_info: Callable[..., TcpInfo] = _TcpInfoBuilder  # type: ignore[assignment]
# For a decoder's innermost loop, which saves even that call: an empty object of this class
# (``object.__new__``), every slot of TcpInfo stored, then its ``__class__`` set to TcpInfo.
TCP_INFO_SLOTS_OF: type[Any] = _TcpInfoBuilder
ENDPOINT_SLOTS_OF: type[Any] = _EndpointBuilder  # the same for Endpoint


class SocketDraft:
    """Every field of a :class:`Socket`, mutable, until :meth:`finish` turns it into one."""

    __slots__ = Socket.__slots__

    def __init__(
        self,
        family: Family,
        local: Endpoint,
        remote: Endpoint,
        state: TcpState,
        send_queue: int | None,
        recv_queue: int | None,
        listen_backlog: int | None,
        timer: TimerKind | None,
        timer_seconds: float | None,
        retransmits: int | None,
        probes: int | None,
        uid: int | None,
        inode: int | None,
        pids: tuple[int, ...],
        owner_source: OwnerSource,
        raw_state: str | None,
        cookie: int | None,
        tcp_info: TcpInfo | None,
        shutdown: int | None,
        truncated: bool,
        netns: int | None = None,
        drops: int | None = None,
    ) -> None:
        self.family = family
        self.local = local
        self.remote = remote
        self.state = state
        self.send_queue = send_queue
        self.recv_queue = recv_queue
        self.listen_backlog = listen_backlog
        self.timer = timer
        self.timer_seconds = timer_seconds
        self.retransmits = retransmits
        self.probes = probes
        self.uid = uid
        self.inode = inode
        self.pids = pids
        self.owner_source = owner_source
        self.raw_state = raw_state
        self.cookie = cookie
        self.tcp_info = tcp_info
        self.shutdown = shutdown
        self.truncated = truncated
        self.netns = netns
        self.drops = drops

    def finish(self, pids: tuple[int, ...], owner_source: OwnerSource) -> Socket:
        """This object, with its owners set, as a (frozen) Socket. Do not keep the draft."""
        self.pids = pids
        self.owner_source = owner_source
        built: Socket = self  # type: ignore[assignment]
        built.__class__ = Socket
        return built


@dataclass(frozen=True)
class Container:
    """The container a process runs in, as its cgroup path and the node's own files name it.

    ``runtime`` is ``docker``, ``containerd``, ``cri-o`` or ``podman``; ``id`` the runtime's
    container id (64 hex digits as a rule); ``name`` the container's name where the runtime's
    files on this node give one. For a Kubernetes pod, ``pod_uid`` comes from the cgroup path
    and ``pod`` (``namespace/name``) from the kubelet's /var/log/pods directory or the OCI
    annotations; ``qos`` is the pod's QoS class (``guaranteed`` where the path has none)."""

    runtime: str | None = None
    id: str | None = None
    name: str | None = None
    pod_uid: str | None = None
    pod: str | None = None
    qos: str | None = None

    @property
    def label(self) -> str:
        """The name a person knows it by: ``web``, else ``docker:3f2a9c1b7d4e``."""
        if self.name:
            return self.name
        if self.id:
            return f"{self.runtime or 'container'}:{self.id[:12]}"
        if self.pod:
            return f"pod {self.pod}"
        return f"pod uid {self.pod_uid}" if self.pod_uid else (self.runtime or "container")


@dataclass(frozen=True)
class Process:
    pid: int
    name: str | None = None
    user: str | None = None
    uid: int | None = None
    cmdline: tuple[str, ...] | None = None
    open_fds: int | None = None
    # The highest descriptor number a listing showed open (lsof's FD column in a paste). A
    # process gets the lowest free number, so when that one was opened every number below it
    # was in use: a floor on the descriptors it held then, where ``open_fds`` is not known.
    highest_fd: int | None = None
    fd_soft_limit: int | None = None
    fd_hard_limit: int | None = None
    # Where it runs: its network namespace's inode, its container or pod (from
    # /proc/PID/cgroup), the systemd unit holding it, and whether it is a pod's process in the
    # host's network namespace (hostNetwork). None / False where the source did not look.
    netns: int | None = None
    container: Container | None = None
    unit: str | None = None
    host_network: bool = False


@dataclass(frozen=True)
class HostInfo:
    hostname: str | None
    kernel: str | None
    taken_at: float  # seconds since the epoch, UTC
    source: str  # "procfs", "psutil", "snapshot:FILE", …
    privileged: bool | None  # ran with root / CAP_SYS_PTRACE, so every /proc/PID/fd was readable
    platform: str | None = None
    # False where ``taken_at`` is not the capture's time but a stand-in (a pasted file's
    # modification time, or when it was read): kept for ordering, never shown as the time.
    taken_at_known: bool = True


@dataclass(frozen=True)
class Attribution:
    """How complete the socket-to-process mapping is."""

    attempted: bool  # False where the source gives no owners at all (a /proc/net/tcp copy)
    processes_scanned: int = 0
    processes_vanished: int = 0  # exited during the scan
    processes_forbidden: int = 0  # fd directory unreadable (another user's, without root)
    sockets_unseen: int = 0  # sockets with an inode that no readable process holds

    @property
    def complete(self) -> bool:
        return self.attempted and self.processes_forbidden == 0 and self.sockets_unseen == 0


@dataclass(frozen=True)
class Sysctls:
    """The kernel settings that decide how long a state may last (KERNEL.md)."""

    tcp_fin_timeout: int | None = None
    tcp_max_tw_buckets: int | None = None
    ip_local_port_range: tuple[int, int] | None = None
    somaxconn: int | None = None
    tcp_syn_retries: int | None = None
    # Kernels that have it send the first SYN retries 1 s apart: see states.syn_schedule.
    tcp_syn_linear_timeouts: int | None = None
    tcp_synack_retries: int | None = None
    tcp_orphan_retries: int | None = None
    tcp_max_orphans: int | None = None
    tcp_tw_reuse: int | None = None
    tcp_syncookies: int | None = None
    tcp_abort_on_overflow: int | None = None
    tcp_retries2: int | None = None
    tcp_keepalive_time: int | None = None
    tcp_keepalive_intvl: int | None = None
    tcp_keepalive_probes: int | None = None
    # Issue #25, the limits around the states. The SYN queue's ceiling without cookies:
    tcp_max_syn_backlog: int | None = None
    # net.ipv4.tcp_mem: (low, pressure, high) in pages, host-wide; sockstat's ``TCP: mem`` is
    # in pages too, so the two compare without knowing the page size.
    tcp_mem: tuple[int, int, int] | None = None
    # net.ipv4.ip_local_reserved_ports as inclusive (low, high) ranges; () where it is empty,
    # None where the source did not say.
    ip_local_reserved_ports: tuple[tuple[int, int], ...] | None = None
    # net.netfilter.nf_conntrack_max: global to the host, while the count (counter
    # ``conntrack.count``) is per network namespace. None where conntrack is not loaded.
    nf_conntrack_max: int | None = None

    @property
    def ephemeral_port_count(self) -> int | None:
        if self.ip_local_port_range is None:
            return None
        low, high = self.ip_local_port_range
        return high - low + 1


class NetnsKind(enum.StrEnum):
    """What a network namespace is to a person."""

    HOST = "host"  # the one pid 1 lives in
    NAMED = "named"  # bound under /run/netns (``ip netns add``; a CNI plugin's ``cni-*``)
    POD = "pod"  # the processes in it belong to one Kubernetes pod
    CONTAINER = "container"  # ... to one container outside Kubernetes
    PROCESS = "process"  # held by processes that are in no container we recognise


@dataclass(frozen=True)
class NetNamespace:
    """One network namespace a live run read (or could not).

    ``inode`` identifies it (``net:[INODE]``). ``label`` is what the output calls it:
    ``host``, its ``ip netns`` name, its pod (``namespace/name``), its container, or
    ``net:[INODE]``. ``enter`` is a path that leads into it (``/proc/PID/ns/net`` or
    ``/run/netns/NAME``) and ``ip_name`` the name ``ip netns exec`` takes, where it has one.
    ``sysctls`` and ``counters`` are its own: every one of them is per namespace.
    ``source`` says how its sockets were read (``netlink``; ``procfs`` through a process's
    /proc/PID/net/tcp where entering was refused; ``none`` when they could not be read)."""

    inode: int
    label: str
    kind: NetnsKind
    enter: str | None = None
    ip_name: str | None = None
    names: tuple[str, ...] = ()  # every /run/netns name bound to it
    pid: int | None = None  # the lowest pid living in it, if any
    process_count: int = 0
    container: Container | None = None  # the one container (or pod) living in it, if so
    sysctls: Sysctls = field(default_factory=lambda: Sysctls())
    counters: dict[str, int] = field(default_factory=dict)
    source: str = "netlink"

    @property
    def pod(self) -> str | None:
        return self.container.pod if self.container is not None else None


@dataclass(frozen=True)
class ReportedCount:
    """A count of sockets in one state that a paste printed itself -- ``ss ... | wc -l``,
    ``grep -c TIME_WAIT`` -- with what its command selected, so that a finding can say what the
    number is about. The sockets themselves were never listed.

    ``state`` is None for a count of a listing's rows in any state (``netstat -tn | grep 6379
    | wc -l``): it says how many sockets the selection holds, not in which states."""

    state: TcpState | None
    count: int  # the number as printed
    sockets: int  # the sockets it counts (less ss's header line where wc -l counted it)
    command: str  # the command that printed it, as the paste shows it
    # What the command selected besides the state, as the paste says it ("pid=971",
    # "port 8090", "kube-proxy"); None where it counted every socket in that state.
    selects: str | None = None
    pids: tuple[int, ...] = ()  # processes the selection names, where the paste says which
    # A host name the selection greps from rows that show no program (netstat without -n or
    # -p): the connections' other end, taken to be the peer -- the rows' own host name would
    # match too, and the paste does not say which it is.
    peer: str | None = None
    # The same command's earlier counts in the paste (a watch loop, before and after), oldest
    # first.
    earlier: tuple[int, ...] = ()


@dataclass(frozen=True)
class Elision:
    """A mark a paste put inside a listing for rows it left out (``...``, ``[very long
    list]``, ``<snip>``), or the ``head``/``tail`` that cut it (``| head -3``, every row's
    states and holders): the listing is partial there. ``states`` and ``pids`` are those of
    the rows on either side of the mark, the kind of rows it most likely stands for."""

    mark: str
    states: tuple[TcpState, ...] = ()
    pids: tuple[int, ...] = ()


class KernelEvent(enum.StrEnum):
    """A limit the kernel says in its log that it hit (see sources/text/kernel_log.py for the
    exact lines and the kernel versions that print each)."""

    ORPHANS = "orphans"  # "too many orphaned sockets": orphans over tcp_max_orphans
    TCP_MEMORY = "tcp-memory"  # "out of memory -- consider tuning tcp_mem": over tcp_mem[2]
    # "Out of socket memory" (kernels before tcp_check_oom): orphans OR tcp_mem, not said which
    SOCKET_MEMORY = "socket-memory"
    SYN_FLOOD = "syn-flood"  # "Possible SYN flooding on port X": a listener's SYN queue full
    CONNTRACK_FULL = "conntrack-full"  # "nf_conntrack: table full, dropping packet"
    TIME_WAIT_OVERFLOW = "time-wait-overflow"  # "time wait bucket table overflow"


@dataclass(frozen=True)
class KernelMessage:
    """Kernel log lines a paste holds (dmesg, journalctl -k, /var/log/messages) that say a
    limit was hit, one record per event and listener: the first line as pasted, how many times
    the paste shows it, and the timestamps of the first and last as printed (uptime seconds,
    a local time without zone, a syslog time without year: kept as text, never guessed into
    an instant)."""

    event: KernelEvent
    text: str  # the first such line, as the paste shows it
    count: int  # the lines of this event (and listener) in the paste
    line: int  # the paste's line number of the first
    first_seen: str | None = None  # the timestamp printed on the first, as printed
    last_seen: str | None = None  # on the last, where there are several
    # A SYN flood line: the listener's port, its address where the kernel printed one (5.x+),
    # and whether it answered with cookies (True) or dropped the SYN (False).
    port: int | None = None
    address: str | None = None
    cookies: bool | None = None
    # "net_ratelimit: N callbacks suppressed" lines in the paste: net messages the kernel did
    # not print (of this kind or another: the line does not say), in all.
    suppressed: int = 0
    # Seconds from the last such line to the capture this snapshot is (negative: after it),
    # where both times are instants the paste printed (a time with its zone); else None.
    seconds_before_capture: float | None = None


class ErrorKind(enum.StrEnum):
    """An application's own error line in a paste (see sources/text/error_lines.py): a system
    call failed for want of a resource TCP findings are about."""

    # EMFILE, "Too many open files": the process is at its descriptor limit (RLIMIT_NOFILE);
    # accept(), socket() and open() fail for it.
    DESCRIPTORS = "too-many-open-files"
    # EADDRNOTAVAIL, "Cannot assign requested address": connect() (or bind() of port 0) found
    # no free local port toward the destination.
    LOCAL_PORTS = "cannot-assign-address"
    # EADDRINUSE, "Address already in use" (Winsock's WSAEADDRINUSE, 10048): bind() of a
    # chosen address and port found it taken -- by a socket still on it (a TIME_WAIT without
    # SO_REUSEADDR on the new one, or another program listening there).
    ADDRESS_IN_USE = "address-in-use"
    # ETIMEDOUT from connect(), "Connection timed out" while connecting: the SYN and all its
    # retries went unanswered (no SYN-ACK, no RST).
    CONNECT_TIMEOUT = "connect-timed-out"


@dataclass(frozen=True)
class ErrorLine:
    """Lines of a paste where a program (or the reporter, quoting it) says a call failed with
    one of the errors of :class:`ErrorKind`: the first as the paste shows it, how many there
    are and on which line the first is. A fact about the process that printed it, at the time
    it printed it -- which the line rarely says."""

    kind: ErrorKind
    text: str  # the first such line, stripped, as the paste shows it
    count: int  # the lines of this kind in the paste
    line: int  # the paste's line number of the first
    # The process that logged it where the line names one by its syslog tag
    # (``haproxy[3569]: ...``): the first line's.
    program: str | None = None
    pid: int | None = None
    # LOCAL_PORTS only: the line says the local ports ran out ("no free ports"), not only
    # EADDRNOTAVAIL, which an address that is not the host's gives as well.
    ports_named: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything one look at a host saw.

    ``counters`` holds kernel counters by qualified name: ``TcpExt.ListenOverflows`` from
    /proc/net/netstat, ``Tcp.RetransSegs`` from /proc/net/snmp, ``sockstat.TCP.tw`` from
    /proc/net/sockstat. A counter the source did not have is absent from the mapping.
    ``notes`` are what the source wants the reader to know (duplicate rows dropped, lines
    skipped, owners not visible). ``skipped_lines`` counts the input lines that looked like
    socket rows but could not be read (each also has a note naming its line).
    ``state_counts`` holds socket counts per state that a source reported without listing the
    sockets -- a pasted ``netstat -n | awk '{++S[$NF]}'`` summary, say -- keyed by the
    canonical state name (``TIME_WAIT``). They may cover more sockets than ``sockets`` lists
    (the listing next to them is often filtered), and are empty where no summary was given.
    """

    host: HostInfo
    attribution: Attribution
    sysctls: Sysctls = field(default_factory=Sysctls)
    counters: dict[str, int] = field(default_factory=dict)
    processes: tuple[Process, ...] = ()
    sockets: tuple[Socket, ...] = ()
    notes: tuple[str, ...] = ()
    skipped_lines: int = 0
    state_counts: dict[str, int] = field(default_factory=dict)
    # The network namespaces read, the caller's (or the host's) first; empty for a source
    # that knows nothing of namespaces (a paste, an older snapshot). ``sysctls`` and
    # ``counters`` above are the first one's.
    namespaces: tuple[NetNamespace, ...] = ()
    # Counts a pasted transcript printed for one state (``| wc -l``, ``grep -c``); the largest
    # per state is also in ``state_counts``.
    reported: tuple[ReportedCount, ...] = ()
    # The sockets of the captures a paste showed before this one (the same listing taken
    # again, oldest first), where nothing says how far apart they were: for the rules that
    # compare what stayed, went and came. Empty for one look and for a timed series.
    earlier_listings: tuple[tuple[Socket, ...], ...] = ()
    # A paste that printed the same per-state summary several times (an awk histogram run
    # again and again): the earlier captures' counts per state, oldest first, for the states
    # ``state_counts`` holds. A limit reached in one of them was reached, though the last is
    # below it.
    earlier_state_counts: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Marks inside the listing for rows the paste left out: the listing is partial, and a
    # finding about the rows around a mark says their count is a floor.
    elisions: tuple[Elision, ...] = ()
    # Kernel log lines pasted beside the tables that say a limit was hit, at the time of the
    # line: facts about the host, not about this look's moment.
    kernel_log: tuple[KernelMessage, ...] = ()
    # The one state a paste's listing command narrowed its rows to (``ss state fin-wait-2``,
    # ``netstat -tpn | grep FIN_WAIT2``): sockets in other states were not shown, which is not
    # the same as absent. None: the listing shows every state (or is no paste).
    listed_state: TcpState | None = None
    # A paste's listing printed by a command seen in it that shows every listener and narrows
    # nothing (``ss -lnt``, ``netstat -lntp``; no grep, no filter, no elision): a listener not
    # in its rows is not on the host. False where that is not known (no command shown).
    every_listener_shown: bool = False
    # Error lines pasted beside the tables (``socket: too many open files``, ``connect:
    # cannot assign requested address``): what a process met, in its own words.
    error_lines: tuple[ErrorLine, ...] = ()


# ---------------------------------------------------------------------------------------------
# Findings: what the diagnosis says about a snapshot.


class Severity(enum.IntEnum):
    OK = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name


class Blame(enum.StrEnum):
    LOCAL_APPLICATION = "local-application"
    REMOTE_PEER = "remote-peer"
    NETWORK = "network"
    KERNEL_LIMIT = "kernel-limit"
    NONE = "none"


class SubjectKind(enum.StrEnum):
    PROCESS = "process"
    LISTENER = "listener"
    PEER = "peer"  # a remote address (and port) many sockets point at
    HOST = "host"  # the whole host (a kernel-wide limit)


@dataclass(frozen=True)
class Subject:
    """Who a finding is about. ``pid``/``process`` name the local process where one is known;
    ``endpoint`` is the listener's local address or the remote peer, as text for reading.

    The same subject as data, for the steps that follow the rules (the series, the report,
    filters) so that none of them reads text back: ``pids`` is every process the finding is
    about (``pid`` first, the owner it names; then the others, such as a listener's clients),
    ``address`` the listener's local endpoint or the peer's as the model's object (``None``
    where the finding names no single one, or only a port)."""

    kind: SubjectKind
    pid: int | None = None
    process: str | None = None
    endpoint: str | None = None
    pids: tuple[int, ...] = ()
    address: Endpoint | None = None

    def __post_init__(self) -> None:
        # A subject naming one pid is about that pid: ``pids`` never leaves it out.
        if self.pid is not None and not self.pids:
            object.__setattr__(self, "pids", (self.pid,))

    def describe(self) -> str:
        parts: list[str] = []
        if self.pid is not None:
            parts.append(f"pid {self.pid}" + (f" ({self.process})" if self.process else ""))
        elif self.process:
            parts.append(self.process)
        if self.endpoint:
            parts.append(self.endpoint)
        return " ".join(parts) if parts else self.kind.value


@dataclass(frozen=True)
class Evidence:
    """One fact a finding rests on: ``name`` is stable (``recv_queue``, ``ListenOverflows``,
    ``tcp_fin_timeout``), ``value`` what was seen, ``detail`` a short reading of it."""

    name: str
    value: int | float | str | None
    detail: str | None = None


@dataclass(frozen=True)
class CodeEntry:
    """One finding code as the catalogue lists it (``tcphealth explain --codes``): the code,
    the rule that declares it, the severities it can carry, whether only a series of samples
    can show it, and what it means in one line."""

    code: str
    rule: str
    severities: tuple[Severity, ...]
    from_series: bool
    meaning: str

    @property
    def severity_text(self) -> str:
        """``WARNING-CRITICAL``, ``INFO``: the range, lowest to highest."""
        low, high = min(self.severities), max(self.severities)
        return low.label if low == high else f"{low.label}-{high.label}"


@dataclass(frozen=True)
class Finding:
    code: str  # stable, e.g. "close-wait-not-reading"
    severity: Severity
    state: TcpState | None
    blame: Blame
    subject: Subject
    count: int  # sockets concerned
    summary: str  # the diagnosis, one sentence
    evidence: tuple[Evidence, ...] = ()
    next_steps: tuple[str, ...] = ()
    unchecked: tuple[str, ...] = ()  # what the snapshot could not tell us for this finding
    # Where it was found, on a run that read namespaces: the namespace's label, and the
    # container and pod of the process (or of the namespace) it is about. None: not said.
    netns: str | None = None
    container: str | None = None
    pod: str | None = None
    # Under a filter: what of the finding's cause lies outside the sockets shown.
    outside_filter: tuple[str, ...] = ()


def finding_order(finding: Finding) -> tuple[int, int, bool, str, str]:
    """The one order findings are listed in, everywhere: most severe first, then the largest,
    then a listener's own state before the connections (a listener that does not accept is
    what the CLOSE_WAIT and SYN_RECV queued behind it wait on: at the same severity and size,
    the cause is named first), then by code; the subject breaks the last ties so that the same
    snapshot always gives the same list."""
    return (
        -finding.severity,
        -finding.count,
        finding.state is not TcpState.LISTEN,
        finding.code,
        finding.subject.describe(),
    )
