"""What a socket or a process can be, whatever a source says: the ranges of the kernel's fields.

Every source that reads text or files written by others (a /proc table, a copied tree, ss or
netstat output, a snapshot) checks what it built against these before keeping it, so a port
of 1194859, a pid of -1 or an IPv6 address in an IPv4 socket never reaches a diagnosis: such a
row is skipped with its reason, such a snapshot is refused with the field named.

The widths are the kernel's: ports are 16 bits, uids 32 bits (``(uid_t)-1`` is "no uid", never
a user), pids positive and within ``pid_t``, queues and counters unsigned 32 bits, inodes,
cookies and namespace inodes unsigned 64 bits, timers finite and not negative.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from typing import Protocol

from tcphealth.model import Endpoint, Family, Process, Socket, TcpInfo

PORT_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
PID_MAX = 0x7FFF_FFFF  # pid_t is a signed 32-bit int; Linux stops far below (2**22)
UID_MAX = U32_MAX - 1  # (uid_t)-1 means "no uid" to every system call
# The longest a timer may be said to run: a day is already far past any TCP timer a kernel
# sets (the longest, keepalive, is at most 32767 s); past this the value is noise, not time.
TIMER_MAX_SECONDS = 1e9

# A process's name (and user) and command line are kept to these lengths in characters, the cut
# marked by CUT_MARK, whatever the source: a copied tree may hold a megabyte of command line
# for each of thousands of processes, a paste or a snapshot a name of any length, and every
# output repeats it per socket. The kernel's own name is 15 bytes; 4,096 is the kernel's page
# of /proc/PID/cmdline that ps shows by default.
MAX_NAME_CHARS = 256
MAX_CMDLINE_CHARS = 4096
CUT_MARK = "…[cut]"


def capped_name(text: str) -> str:
    """``text`` kept to MAX_NAME_CHARS, the cut marked."""
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + CUT_MARK


def capped_cmdline(args: tuple[str, ...]) -> tuple[str, ...]:
    """Arguments kept to MAX_CMDLINE_CHARS in all, the last one kept marked as cut."""
    kept: list[str] = []
    left = MAX_CMDLINE_CHARS
    for arg in args:
        if len(arg) > left:
            kept.append(arg[:left] + CUT_MARK)
            return tuple(kept)
        kept.append(arg)
        left -= len(arg)
    return args


def capped_process(process: Process) -> Process:
    """``process`` with its name, user and command line kept to their lengths; the same object
    when nothing is over (the common case costs no copy)."""
    name, user, cmdline = process.name, process.user, process.cmdline
    new_name = capped_name(name) if name is not None else None
    new_user = capped_name(user) if user is not None else None
    new_cmdline = capped_cmdline(cmdline) if cmdline is not None else None
    if new_name is name and new_user is user and new_cmdline is cmdline:
        return process
    return dataclasses.replace(process, name=new_name, user=new_user, cmdline=new_cmdline)


# Memory, whatever the source (the README, next to the size limits): a run's peak is at most
# a fixed cost (the interpreter, tcphealth's modules, the bounded tables of shared endpoints
# and addresses) plus this much for each socket it reads. The rate is no more than twice what
# the live collector needs for one (615 bytes at 300,000 sockets, so 1,230: benchmarks/
# RESULTS.md, `make bench-memory`), and above what the costliest inputs measured need: 780
# bytes for a paste of 750,000 connections each a report group of its own, 750 for an
# `ss -tanipem` paste (tcp_info and owners) at the 256 MiB text limit.
MEMORY_FIXED_BYTES = 96 << 20
MEMORY_PER_SOCKET_BYTES = 1000
# The 1 GiB a run may reach at the 256 MiB limit of pasted text.
TEXT_LIMIT_MEMORY_BYTES = 1 << 30
# The most socket rows one paste may hold: as many as the rate above allows within that 1 GiB,
# rounded down to ten thousand (970,000). A row of `ss -tan` is ~50 bytes of text, so 256 MiB
# of them would be ~5 million sockets (~5 GiB by the rate); no incident paste comes near the
# cap: a host that large is read live or from a snapshot (`tcphealth snapshot -o`), whose
# limit is its size. /proc tables (~135 bytes a row, ~320 bytes a socket measured) are not
# capped: at the 256 MiB limit they hold ~2 million rows within 1 GiB.
PASTE_SOCKET_LIMIT = (
    (TEXT_LIMIT_MEMORY_BYTES - MEMORY_FIXED_BYTES) // MEMORY_PER_SOCKET_BYTES // 10_000 * 10_000
)

Problem = tuple[str, str]  # (field, why)


def shown(value: int) -> str:
    """The number as text -- unless it is too long to print (Python refuses past 4,300
    digits, and nobody reads 60 of them): then how long it is."""
    if value.bit_length() <= 128:
        return str(value)
    return f"a {value.bit_length():,}-bit number"


def _integer(value: int | None, low: int, high: int) -> str | None:
    if value is None or low <= value <= high:
        return None
    if value < low:
        return f"{shown(value)} is negative" if low == 0 else f"{shown(value)} is below {low}"
    return f"{shown(value)} is over {high:,}"


def endpoint_problem(endpoint: Endpoint, family: Family) -> str | None:
    port = endpoint.port
    if port is not None and not 0 <= port <= PORT_MAX:
        return f"{shown(port)} is not a port (0-65535)"
    wanted = ipaddress.IPv4Address if family is Family.IPV4 else ipaddress.IPv6Address
    if not isinstance(endpoint.address, wanted):
        return f"{endpoint.address} is not an {family.value} address"
    return None


class SocketFields(Protocol):
    """What a socket and a paste's row (before its owners are known) both carry."""

    @property
    def family(self) -> Family: ...
    @property
    def local(self) -> Endpoint: ...
    @property
    def remote(self) -> Endpoint: ...
    @property
    def send_queue(self) -> int | None: ...
    @property
    def recv_queue(self) -> int | None: ...
    @property
    def listen_backlog(self) -> int | None: ...
    @property
    def timer_seconds(self) -> float | None: ...
    @property
    def retransmits(self) -> int | None: ...
    @property
    def probes(self) -> int | None: ...
    @property
    def uid(self) -> int | None: ...
    @property
    def inode(self) -> int | None: ...
    @property
    def cookie(self) -> int | None: ...
    @property
    def tcp_info(self) -> TcpInfo | None: ...


def socket_problem(sock: Socket) -> Problem | None:
    """The first field of ``sock`` outside what the kernel can hold, and why; None if none."""
    problem = fields_problem(sock)
    if problem is not None:
        return problem
    for name, value, high in (
        ("shutdown", sock.shutdown, 3),
        ("netns", sock.netns, U64_MAX),
    ):
        why = _integer(value, 0, high)
        if why is not None:
            return (name, why)
    for pid in sock.pids:
        why = pid_problem(pid)
        if why is not None:
            return ("pids", why)
    return None


def pid_problem(pid: int) -> str | None:
    why = _integer(pid, 1, PID_MAX)
    return None if why is None else f"pid {why}"


def fields_problem(sock: SocketFields) -> Problem | None:
    """The first of the fields every source gives that is out of range, and why."""
    for name, endpoint in (("local", sock.local), ("remote", sock.remote)):
        why = endpoint_problem(endpoint, sock.family)
        if why is not None:
            return (name, why)
    for name, value, high in (
        ("send_queue", sock.send_queue, U32_MAX),
        ("recv_queue", sock.recv_queue, U32_MAX),
        ("listen_backlog", sock.listen_backlog, U32_MAX),
        ("retransmits", sock.retransmits, U32_MAX),
        ("probes", sock.probes, U32_MAX),
        ("uid", sock.uid, UID_MAX),
        ("inode", sock.inode, U64_MAX),
        ("cookie", sock.cookie, U64_MAX),
    ):
        why = _integer(value, 0, high)
        if why is not None:
            return (name, why)
    seconds = sock.timer_seconds
    if seconds is not None and not (math.isfinite(seconds) and 0 <= seconds <= TIMER_MAX_SECONDS):
        return ("timer_seconds", f"{seconds} is not a time left on a timer")
    if sock.tcp_info is not None:
        return _tcp_info_problem(sock.tcp_info)
    return None


def _tcp_info_problem(info: TcpInfo) -> Problem | None:
    for name in TcpInfo.__slots__:
        value = getattr(info, name)
        why = _integer(value, 0, U64_MAX if name == "total_retrans" else U32_MAX)
        if why is not None:
            return (f"tcp_info.{name}", why)
    return None


def process_problem(process: Process) -> Problem | None:
    """The first field of ``process`` outside its range, and why; None if none."""
    for name, value, low, high in (
        ("pid", process.pid, 1, PID_MAX),
        ("uid", process.uid, 0, UID_MAX),
        ("open_fds", process.open_fds, 0, U64_MAX),
        ("highest_fd", process.highest_fd, 0, U64_MAX),
        ("fd_soft_limit", process.fd_soft_limit, 0, U64_MAX),
        ("fd_hard_limit", process.fd_hard_limit, 0, U64_MAX),
        ("netns", process.netns, 0, U64_MAX),
    ):
        why = _integer(value, low, high)
        if why is not None:
            return (name, why)
    return None


def described(problem: Problem) -> str:
    """``local port: 1194859 is not a port (0-65535)`` -- for a skipped row's reason."""
    name, why = problem
    return f"{name.replace('_', ' ')}: {why}"
