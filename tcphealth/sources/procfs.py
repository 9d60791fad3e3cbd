"""The Linux /proc source: /proc/net/tcp{,6}, one walk over /proc/*/fd, sysctls and counters.

Everything is read below ``proc_root``, so a copied /proc tree (or a fixture directory) parses
exactly like the live one.

Row format (Documentation/networking/proc_net_tcp.rst), one socket per line::

   sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
   3: 802AA8C0:D450 2104C798:01BB 08 00000000:00000052 02:00000A6F 00000000 1000 0 149098 …

Addresses are 32-bit words printed as hex in *host* byte order: ``0100007F`` is 127.0.0.1 on
x86. An IPv6 address is four such words, each in host order -- not one reversed 128-bit number.
Ports, states, queues and the timer are plain hex; uid, timeout and inode are decimal.
TIME_WAIT and SYN_RECV request sockets are "mini sockets" with 12 columns whose uid (TIME_WAIT
only), probe count and retransmit count are placeholders, so we record those as unknown.
"""

from __future__ import annotations

import ipaddress
import operator
import os
import pwd
import re
import socket as socket_module
import stat
import sys
import time
from array import array
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TextIO

from tcphealth import bounds, gcpause
from tcphealth.errors import InputError, ProcParseError
from tcphealth.model import (
    Attribution,
    Endpoint,
    Family,
    HostInfo,
    IPAddress,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    Sysctls,
    TcpState,
    TimerKind,
    state_from_kernel_code,
    timer_from_kernel_code,
)
from tcphealth.phrases import unseen_owner_note
from tcphealth.sources.owners import Sorted, credit_in_place, credit_unaccepted_to_listeners

ByteOrder = Literal["little", "big"]

# /proc prints timer expiry in USER_HZ ticks (clock_t), which is 100 on every Linux ABI.
USER_HZ = 100


# --- parsing a table ----------------------------------------------------------------------------


@dataclass
class TableParse:
    """What parsing one /proc/net/tcp-style table produced."""

    sockets: list[Socket] = field(default_factory=list)
    duplicates: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def decode_address(text: str, byteorder: ByteOrder = sys.byteorder) -> IPAddress:
    """Decode a /proc address column (without the port).

    >>> decode_address("0100007F", "little")
    IPv4Address('127.0.0.1')
    >>> decode_address("B80D01200000000067452301EFCDAB89", "little")
    IPv6Address('2001:db8::123:4567:89ab:cdef')
    """
    if len(text) == 8:
        return ipaddress.IPv4Address(int(text, 16).to_bytes(4, byteorder))
    if len(text) == 32:
        packed = b"".join(int(text[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, 32, 8))
        return ipaddress.IPv6Address(packed)
    raise ValueError(f"address {text!r} is neither 8 nor 32 hex digits")


class Shared:
    """Values many rows of a table hold alike -- endpoints, uids -- kept once each, by the text
    of their column. Bounded (:data:`SHARED_MAX` of each), so that a table whose endpoints are
    all different does not pay for the lookup table on top of them."""

    __slots__ = ("addresses", "endpoints", "uids")

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.addresses: dict[str, IPAddress] = {}
        self.uids: dict[str, int] = {}

    def endpoint(self, text: str, byteorder: ByteOrder) -> Endpoint:
        found = self.endpoints.get(text)
        if found is not None:
            return found
        # Fewer addresses than endpoints repeat (a client's ports differ): shared on their own.
        address_text, separator, port = text.partition(":")
        if not separator:
            raise ValueError(f"endpoint {text!r} has no ':port'")
        address = self.addresses.get(address_text)
        if address is None:
            address = decode_address(address_text, byteorder)
            if len(self.addresses) < SHARED_MAX:
                self.addresses[address_text] = address
        found = Endpoint(address, int(port, 16))
        if len(self.endpoints) < SHARED_MAX:
            self.endpoints[text] = found
        return found

    def uid(self, text: str) -> int:
        found = self.uids.get(text)
        if found is None:
            found = int(text)
            if len(self.uids) < SHARED_MAX:
                self.uids[text] = found
        return found


# Enough for a busy server's local ports and its clients' addresses: a few MiB at most.
SHARED_MAX = 1 << 16


def decode_endpoint(text: str, byteorder: ByteOrder = sys.byteorder) -> Endpoint:
    address, separator, port = text.partition(":")
    if not separator:
        raise ValueError(f"endpoint {text!r} has no ':port'")
    return Endpoint(decode_address(address, byteorder), int(port, 16))


def check_header(header: str, where: str, line: int = 1) -> None:
    """Refuse a header that is not /proc/net/tcp's (``line`` is where it is in the file)."""
    words = header.split()
    if "local_address" not in words or "st" not in words:
        raise ProcParseError(
            where, "not a /proc/net/tcp table (no 'local_address … st' header)", line=line
        )
    # /proc/net/udp{,6} shares the layout but ends its header with "ref pointer drops"; its
    # rows would parse, and its state 07 would read as a TCP CLOSE. Refuse it by name.
    if "drops" in words:
        raise ProcParseError(
            where,
            "this is a UDP table (its header ends in 'drops', as /proc/net/udp does), not TCP",
            line=line,
        )


def parse_row(
    line: str, family: Family, byteorder: ByteOrder, shared: Shared | None = None
) -> Socket:
    """Parse one data row. Raises ValueError (with a reason) when it is malformed, or when a
    field holds a value no kernel prints there (see :mod:`tcphealth.bounds`). ``shared`` holds
    the endpoints and uids of earlier rows, to reuse."""
    fields = line.split()
    # int() reads more than the kernel writes: signs, '_' between digits, and any Unicode
    # digit ('٣'). A row whose first ten columns hold one of those is no /proc/net/tcp row
    # (the columns after them may: the kernel prints an unset ssthresh as -1).
    head = " ".join(fields[:10])
    if not head.isascii() or "-" in head or "+" in head or "_" in head:
        raise ValueError("characters no /proc/net/tcp column holds (a sign, '_', or non-ASCII)")
    if len(fields) < 10:
        raise ValueError(f"{len(fields)} columns, at least 10 expected")
    if not fields[0].endswith(":"):
        raise ValueError(f"first column {fields[0]!r} is not a slot number like '12:'")
    if shared is None:
        local = decode_endpoint(fields[1], byteorder)
        remote = decode_endpoint(fields[2], byteorder)
    else:
        local = shared.endpoint(fields[1], byteorder)
        remote = shared.endpoint(fields[2], byteorder)
    expected = 8 if family is Family.IPV4 else 32
    if len(fields[1].partition(":")[0]) != expected:
        raise ValueError(f"{family.value} address expected, got {fields[1]!r}")
    if len(fields[3]) > 2:
        raise ValueError(f"state {fields[3]!r} is wider than the kernel's two hex digits")
    state_code = int(fields[3], 16)
    state = state_from_kernel_code(state_code)
    tx_text, _, rx_text = fields[4].partition(":")
    timer_text, _, when_text = fields[5].partition(":")
    send_queue, recv_queue = int(tx_text, 16), int(rx_text, 16)
    timer = timer_from_kernel_code(int(timer_text, 16))
    if len(when_text) > 16:  # a long, at most
        raise ValueError(f"timer {when_text!r} is wider than 64 bits")
    ticks = int(when_text, 16)
    retransmits: int | None = int(fields[6], 16)
    uid: int | None = int(fields[7]) if shared is None else shared.uid(fields[7])
    probes: int | None = int(fields[8])
    inode = int(fields[9])
    if len(fields) <= 12:
        # A mini socket: for TIME_WAIT the kernel prints zeros for uid, retransmits and probes;
        # for a SYN_RECV request the uid is the listener's and retrnsmt counts SYN-ACK resends,
        # but "timeout" is a constant zero.
        probes = None
        if state is TcpState.TIME_WAIT:
            uid = None
            retransmits = None
    sock = Socket(
        family=family,
        local=local,
        remote=remote,
        state=state,
        send_queue=send_queue,
        recv_queue=recv_queue,
        timer=timer,
        timer_seconds=None if timer is TimerKind.NONE else ticks / USER_HZ,
        retransmits=retransmits,
        probes=probes,
        uid=uid,
        inode=inode,
        raw_state=f"{state_code:02X}" if state is TcpState.UNKNOWN else None,
    )
    problem = bounds.socket_problem(sock)
    if problem is not None:
        raise ValueError(bounds.described(problem))
    return sock


def parse_table(
    lines: Iterable[str],
    family: Family,
    where: str,
    *,
    byteorder: ByteOrder = sys.byteorder,
    strict: bool = False,
) -> TableParse:
    """Parse the text of /proc/net/tcp (``Family.IPV4``) or /proc/net/tcp6 (``Family.IPV6``).

    A row listed twice (a non-atomic read can do that while sockets churn) is kept once: the
    key is the 4-tuple plus the inode, which tells SO_REUSEPORT listeners apart. A malformed
    row is skipped and reported in ``skipped``, or raises with ``strict``.
    """
    iterator = iter(lines)
    header = next(iterator, None)
    if header is None or not header.strip():
        raise ProcParseError(where, "empty: not even a header line")
    check_header(header, where)
    reader = TableReader(family, where, byteorder=byteorder, strict=strict)
    for number, raw in enumerate(iterator, start=2):
        reader.add(number, raw)
    return reader.finish()


class TableReader:
    """The rows of one table (its header already checked), given one at a time with their line
    numbers, so that a caller walking a larger text never holds its lines."""

    def __init__(
        self, family: Family, where: str, *, byteorder: ByteOrder = sys.byteorder, strict: bool
    ) -> None:
        self.family = family
        self.where = where
        self.byteorder = byteorder
        self.strict = strict
        self.result = TableParse()
        self._seen: set[tuple[Endpoint, Endpoint, int]] = set()
        self._by_inode: dict[int, Socket] = {}
        # Endpoints and uids repeat (every connection accepted on a port has the same local
        # endpoint): each distinct one is kept once, by the text of its column.
        self._shared = Shared()

    def add(self, number: int, raw: str) -> None:
        line = raw.rstrip("\r\n")
        if not line.strip():
            return
        if "local_address" in line:  # a second capture pasted after the first
            check_header(line, self.where, number)
            return
        try:
            sock = parse_row(line, self.family, self.byteorder, self._shared)
        except ValueError as error:
            reason = _reason(error)
            if self.strict:
                raise ProcParseError(
                    self.where, f"{reason}: {line.strip()!r}", line=number
                ) from None
            self.result.skipped.append((number, reason))
            return
        if self._listed_before(sock):
            self.result.duplicates += 1
            return
        self.result.sockets.append(sock)

    def _listed_before(self, sock: Socket) -> bool:
        """Whether an earlier row had this socket's endpoints and inode. A socket with an
        inode is looked up by it alone (an entry of a dict, where a key of the three would
        cost a tuple a row); only where one inode comes with other endpoints (a socket whose
        address changed between the kernel's two reads) are keys of the three kept."""
        inode = sock.inode or 0
        if inode:
            first = self._by_inode.get(inode)
            if first is None:
                self._by_inode[inode] = sock
                return False
            if first.local == sock.local and first.remote == sock.remote:
                return True
        key = (sock.local, sock.remote, inode)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def finish(self) -> TableParse:
        self._seen = set()
        self._by_inode = {}
        self._shared = Shared()
        return self.result


_INT_ERROR = re.compile(r"invalid literal for int\(\) with base (\d+): (.*)")


def _reason(error: ValueError) -> str:
    """Why a row was skipped, in our words: ``'0100007G' is not hexadecimal`` rather than
    Python's ``invalid literal for int() with base 16``. Only skipped rows pay for this; the
    row parser itself stays a straight line of int() calls."""
    text = str(error)
    match = _INT_ERROR.fullmatch(text)
    if match is None:
        return text
    kind = "hexadecimal" if match.group(1) == "16" else "a decimal number"
    return f"{match.group(2)} is not {kind}"


# --- who holds each socket ----------------------------------------------------------------------


@dataclass
class FdScan:
    """One pass over /proc/*/fd: which pids hold each socket inode, and how many fds each has.

    ``pids_by_inode`` maps an inode to the sorted pids holding it. The tuples are shared: every
    socket held by one process alone refers to the same ``(pid,)``."""

    pids_by_inode: dict[int, tuple[int, ...]] = field(default_factory=dict)
    open_fds: dict[int, int] = field(default_factory=dict)
    scanned: int = 0
    vanished: int = 0
    forbidden: int = 0


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²' and '٣', which int() then refuses or
    reads as a number no kernel wrote."""
    return text.isascii() and text.isdigit()


def _pid_dirs(proc_root: Path) -> Iterator[int]:
    with os.scandir(proc_root) as entries:
        for entry in entries:
            name = entry.name
            if _is_number(name) and 0 < (pid := int(name)) <= bounds.PID_MAX:
                yield pid


def scan_fds(proc_root: Path, *, skip_pids: Collection[int] = ()) -> FdScan:
    """Read every /proc/PID/fd link once. A process that exits meanwhile is counted as
    vanished, one whose fds we may not read as forbidden; neither stops the scan.

    ``skip_pids`` are left out: a forked helper of ours holds copies of all our descriptors,
    and must not be named as their owner."""
    scan = FdScan()
    live = proc_root == Path("/proc")
    for pid in _pid_dirs(proc_root):
        if pid in skip_pids:
            continue
        fd_path = f"{proc_root}/{pid}/fd"
        try:
            count, inodes = fd_table(fd_path)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            scan.vanished += 1  # exited, or a pid directory replaced under us
            continue
        except PermissionError:
            scan.forbidden += 1
            continue
        except OSError as error:
            # A copied tree can hold what /proc never does (a symlink loop, a file system
            # error): the input is at fault, and says where. The live /proc never drops a
            # scan for one odd process.
            if not live:
                raise InputError(fd_path, error.strerror or str(error)) from None
            scan.vanished += 1
            continue
        scan.scanned += 1
        scan.open_fds[pid] = count
        credit_holder(scan.pids_by_inode, pid, inodes)
    return scan


def fd_table(fd_path: str) -> tuple[int, array[int]]:
    """How many descriptors the directory ``fd_path`` (a /proc/PID/fd) lists, and the inodes
    of the sockets among them, in the order listed (one socket on several fds is there as
    often). Raises the OSError of a directory that cannot be read: the process exited
    (FileNotFoundError, ProcessLookupError) or is not ours to read (PermissionError)."""
    names = os.listdir(fd_path)
    # Links are read relative to the open directory: one path lookup per process, not one
    # per descriptor (half the cost of a readlink on a full path).
    fd_dir = os.open(fd_path, os.O_RDONLY | os.O_DIRECTORY)
    inodes = array("Q")
    append = inodes.append
    readlink = os.readlink
    try:
        for name in names:
            try:
                target = readlink(name, dir_fd=fd_dir)
            except OSError:  # the fd was closed between listdir and readlink
                continue
            if (
                target[:8] == "socket:["
                and target[-1:] == "]"
                and (digits := target[8:-1]).isascii()
                and digits.isdigit()
                and len(digits) <= 20
                and (inode := int(digits)) < 1 << 64
            ):
                append(inode)
    finally:
        os.close(fd_dir)
    return len(names), inodes


def credit_holder(
    pids_by_inode: dict[int, tuple[int, ...]], pid: int, inodes: Iterable[int]
) -> None:
    """Add ``pid`` to the holders of each of ``inodes`` in ``pids_by_inode`` (kept sorted;
    every socket held by ``pid`` alone shares one ``(pid,)``)."""
    remember = pids_by_inode.setdefault
    alone = (pid,)
    for inode in inodes:
        holders = remember(inode, alone)  # one lookup for the usual first holder
        if holders is not alone and pid not in holders:
            # another process holds it too (one process may hold a socket on many fds: that
            # is no second holder)
            pids_by_inode[inode] = tuple(sorted((*holders, pid)))


# The most descriptors the second look (below) reads again; past it, the unseen sockets stay
# unseen and the note says so, rather than doubling the cost of a run on a huge host.
SECOND_LOOK_FD_BUDGET = 50_000
# ... and, below that, at most this many per unseen socket: re-reading a descriptor costs
# about 4 us, so one late socket is worth a small process read again (20 ms at most), not a
# server holding 20,000 descriptors (0.1-0.2 s, for one socket of hundreds of thousands);
# a host that opened many while the walk ran gets the whole budget.
SECOND_LOOK_FDS_PER_SOCKET = 4_000


def second_look(
    sockets: list[Socket], scan: FdScan, proc_root: Path, unseen: list[Socket] | None = None
) -> tuple[list[Socket], int]:
    """Find the holders of sockets opened while the fd walk ran (they were not in any fd
    directory yet when the walk passed it), by reading again the fds of the processes most
    likely to hold them: those listening on the socket's local port (an accepted
    connection), and those already holding another socket to the same remote endpoint (a
    client connecting again). Returns the sockets and how many stay unseen.

    On a host that opens connections fast, a walk of a second or more would otherwise leave
    every new connection of that second without an owner. ``unseen``: those sockets, where
    the caller has them already (in the order of ``sockets``)."""
    if unseen is None:
        unseen = [sock for sock in sockets if sock.owner_source is OwnerSource.UNSEEN]
    if not unseen:
        return sockets, 0
    # Only the ports and peers of the unseen sockets are looked for: on a busy host a few
    # unseen sockets must not cost a dictionary of every connection.
    local_ports = {sock.local.port for sock in unseen}
    remotes = {sock.remote for sock in unseen}
    remote_ports = {remote.port for remote in remotes}  # a cheap test before hashing endpoints
    candidates: set[int] = set()
    for sock in sockets:
        if not sock.pids:
            continue
        if sock.state is TcpState.LISTEN:
            if sock.local.port in local_ports:
                candidates.update(sock.pids)
        elif sock.remote.port in remote_ports and sock.remote in remotes:
            candidates.update(sock.pids)
    found: dict[int, tuple[int, ...]] = {}
    wanted = {sock.inode for sock in unseen}
    budget = min(SECOND_LOOK_FD_BUDGET, SECOND_LOOK_FDS_PER_SOCKET * len(unseen))
    # The smallest first: many small processes are cheaper to read again than one huge one.
    for pid in sorted(candidates, key=lambda pid: (scan.open_fds.get(pid, 0), pid)):
        budget -= scan.open_fds.get(pid, 0)
        if budget < 0:
            break
        for inode in _socket_inodes(proc_root, pid):
            if inode in wanted:
                found[inode] = tuple(sorted({*found.get(inode, ()), pid}))
    if not found:
        return sockets, len(unseen)
    result = [
        replace(sock, pids=found[sock.inode], owner_source=OwnerSource.FD)
        if sock.owner_source is OwnerSource.UNSEEN and sock.inode in found
        else sock
        for sock in sockets
    ]
    return result, len(unseen) - sum(1 for sock in unseen if sock.inode in found)


def _socket_inodes(proc_root: Path, pid: int) -> Iterator[int]:
    """The inodes of the sockets process ``pid`` holds now; nothing if it is gone."""
    fd_path = f"{proc_root}/{pid}/fd"
    try:
        names = os.listdir(fd_path)
        fd_dir = os.open(fd_path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        for name in names:
            try:
                target = os.readlink(name, dir_fd=fd_dir)
            except OSError:
                continue
            if target.startswith("socket:[") and _is_number(target[8:-1]):  # a copy may lie
                yield int(target[8:-1])
    finally:
        os.close(fd_dir)


def owner_fields(
    inode: int | None, pids_by_inode: dict[int, tuple[int, ...]]
) -> tuple[tuple[int, ...], OwnerSource]:
    """The pids holding a socket with this inode, and how we know."""
    if not inode:
        return (), OwnerSource.NONE
    holders = pids_by_inode.get(inode)
    if holders:
        return holders, OwnerSource.FD
    return (), OwnerSource.UNSEEN


def attribute(sockets: list[Socket], scan: FdScan) -> tuple[list[Socket], int]:
    """Credit every socket to every pid that holds it; credit sockets still waiting in an
    accept queue (inode 0) to the process of the listener on their local address and port.

    Returns the attributed sockets and how many sockets with an inode no readable process held.
    """
    attributed: list[Socket] = []
    unseen = 0
    for sock in sockets:
        pids, owner_source = owner_fields(sock.inode, scan.pids_by_inode)
        unseen += owner_source is OwnerSource.UNSEEN
        attributed.append(replace(sock, pids=pids, owner_source=owner_source))
    return credit_unaccepted_to_listeners(attributed), unseen


# --- processes ----------------------------------------------------------------------------------


# A copied /proc may hold anything: no file of it is read past this, nor waited on.
MAX_PROC_FILE_BYTES = 4 << 20
PROC_READ_CHUNK = 64 << 10
MAX_TABLE_BYTES = 256 << 20


def _read_text(path: str, limit: int = MAX_PROC_FILE_BYTES) -> str | None:
    """A small /proc file as text (its first ``limit`` bytes), None where it cannot be read.
    Bytes that are not UTF-8 (a process may name itself anything) become ``\\xff`` escapes,
    visible and inert."""
    data = _read_bytes(path, limit)
    return None if data is None else data.decode("utf-8", errors="backslashreplace")


def _read_bytes(path: str, limit: int) -> bytes | None:
    try:
        # O_NONBLOCK: a named pipe in a copied tree reads as nothing instead of hanging.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        parts: list[bytes] = []
        total = 0
        while total < limit:
            # In small reads: /proc/sys allocates a kernel buffer of the size asked for, and
            # fails with ENOMEM for megabytes.
            chunk = os.read(fd, min(PROC_READ_CHUNK, limit - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


def _open_table(path: Path) -> TextIO:
    """Open /proc/net/tcp{,6} -- or a copied tree's file of that name, which must be a regular
    file of reasonable size (the live ones report size 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProcParseError(str(path), "not a regular file")
        if info.st_size > MAX_TABLE_BYTES:
            raise ProcParseError(
                str(path),
                f"{info.st_size:,} bytes is over the limit of {MAX_TABLE_BYTES:,} bytes "
                "for a TCP table; not read",
            )
        os.set_blocking(fd, True)
        return open(fd, encoding="utf-8", errors="replace")
    except BaseException:
        os.close(fd)
        raise


def _fd_limits(limits_text: str | None) -> tuple[int | None, int | None]:
    """Soft and hard 'Max open files' from /proc/PID/limits (``unlimited`` is None)."""
    if limits_text is None:
        return None, None
    for line in limits_text.splitlines():
        if line.startswith("Max open files"):
            parts = line[len("Max open files") :].split()
            if len(parts) >= 2:
                soft = int(parts[0]) if _is_number(parts[0]) and len(parts[0]) <= 20 else None
                hard = int(parts[1]) if _is_number(parts[1]) and len(parts[1]) <= 20 else None
                return soft, hard
    return None, None


def _user_name(uid: int | None, cache: dict[int, str | None]) -> str | None:
    if uid is None:
        return None
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = None
    return cache[uid]


# The lengths a name and a command line are kept to (bounds.py says why); read here with no
# more bytes than they need.
MAX_NAME_CHARS = bounds.MAX_NAME_CHARS
MAX_CMDLINE_CHARS = bounds.MAX_CMDLINE_CHARS
CUT_MARK = bounds.CUT_MARK


def _capped_cmdline(text: str, complete: bool) -> tuple[str, ...] | None:
    """The arguments of a NUL-separated command line, cut at MAX_CMDLINE_CHARS in all (the
    last one kept marked) -- also where the file itself was longer than was read."""
    args = bounds.capped_cmdline(tuple(arg for arg in text.split("\0") if arg))
    if not complete and args and not args[-1].endswith(CUT_MARK):
        args = (*args[:-1], args[-1] + CUT_MARK)
    return args or None


def read_process(
    proc_root: Path, pid: int, open_fds: int | None, users: dict[int, str | None]
) -> Process:
    """What /proc says of one process. Anything unreadable (it exited, it is not ours) is
    left unknown rather than failing."""
    base = f"{proc_root}/{pid}"
    comm = _read_text(f"{base}/comm", MAX_NAME_CHARS * 4 + 1)
    # Up to four bytes a character; one more byte tells a line that goes on past the cap.
    cmdline_limit = MAX_CMDLINE_CHARS * 4 + 1
    cmdline_bytes = _read_bytes(f"{base}/cmdline", cmdline_limit)
    status = _read_text(f"{base}/status")
    uid: int | None = None
    if status:
        for line in status.splitlines():
            if line.startswith("Uid:"):
                words = line.split()
                uid = int(words[1]) if len(words) > 1 and _is_number(words[1]) else None
                if uid is not None and uid > bounds.UID_MAX:
                    uid = None
                break
    soft, hard = _fd_limits(_read_text(f"{base}/limits"))
    cmdline = None
    if cmdline_bytes is not None:
        text = cmdline_bytes.decode("utf-8", errors="backslashreplace")
        cmdline = _capped_cmdline(text, complete=len(cmdline_bytes) < cmdline_limit)
    return Process(
        pid=pid,
        name=bounds.capped_name(comm.rstrip("\n")) if comm is not None else None,
        user=_user_name(uid, users),
        uid=uid,
        cmdline=cmdline,
        open_fds=open_fds,
        fd_soft_limit=soft,
        fd_hard_limit=hard,
    )


# --- sysctls and counters ----------------------------------------------------------------------

_SYSCTL_FILES: dict[str, str] = {
    "tcp_fin_timeout": "sys/net/ipv4/tcp_fin_timeout",
    "tcp_max_tw_buckets": "sys/net/ipv4/tcp_max_tw_buckets",
    "somaxconn": "sys/net/core/somaxconn",
    "tcp_syn_retries": "sys/net/ipv4/tcp_syn_retries",
    # Missing on kernels without it: None, read as "every SYN timeout doubles".
    "tcp_syn_linear_timeouts": "sys/net/ipv4/tcp_syn_linear_timeouts",
    "tcp_synack_retries": "sys/net/ipv4/tcp_synack_retries",
    "tcp_orphan_retries": "sys/net/ipv4/tcp_orphan_retries",
    "tcp_max_orphans": "sys/net/ipv4/tcp_max_orphans",
    "tcp_tw_reuse": "sys/net/ipv4/tcp_tw_reuse",
    "tcp_syncookies": "sys/net/ipv4/tcp_syncookies",
    "tcp_abort_on_overflow": "sys/net/ipv4/tcp_abort_on_overflow",
    "tcp_retries2": "sys/net/ipv4/tcp_retries2",
    "tcp_keepalive_time": "sys/net/ipv4/tcp_keepalive_time",
    "tcp_keepalive_intvl": "sys/net/ipv4/tcp_keepalive_intvl",
    "tcp_keepalive_probes": "sys/net/ipv4/tcp_keepalive_probes",
}


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_sysctls(proc_root: Path) -> Sysctls:
    values: dict[str, Any] = {
        name: _read_int(proc_root / relative) for name, relative in _SYSCTL_FILES.items()
    }
    port_range: tuple[int, int] | None = None
    try:
        low, high = (proc_root / "sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        port_range = (int(low), int(high))
    except (OSError, ValueError):
        port_range = None
    return replace(Sysctls(ip_local_port_range=port_range, **values), **_limit_sysctls(proc_root))


def _limit_sysctls(proc_root: Path) -> dict[str, Any]:
    """The settings of issue #25's limits: SYN queue, tcp_mem, reserved ports, conntrack."""
    tcp_mem = _read_text(f"{proc_root}/sys/net/ipv4/tcp_mem")
    reserved = _read_text(f"{proc_root}/sys/net/ipv4/ip_local_reserved_ports")
    return {
        "tcp_max_syn_backlog": _read_int(proc_root / "sys/net/ipv4/tcp_max_syn_backlog"),
        "tcp_mem": None if tcp_mem is None else parse_tcp_mem(tcp_mem),
        "ip_local_reserved_ports": None if reserved is None else parse_port_list(reserved),
        "nf_conntrack_max": _read_int(proc_root / "sys/net/netfilter/nf_conntrack_max"),
    }


def parse_tcp_mem(text: str) -> tuple[int, int, int] | None:
    """``188760\t251683\t377520`` (pages: low, pressure, high); None if it is not three
    whole numbers."""
    words = text.split()
    if len(words) != 3 or not all(word.isascii() and word.isdigit() for word in words):
        return None
    low, pressure, high = (int(word) for word in words)
    return low, pressure, high


def parse_port_list(text: str) -> tuple[tuple[int, int], ...] | None:
    """``ip_local_reserved_ports``: ``8080,9000-9010`` -> ((8080, 8080), (9000, 9010)); an
    empty file is (); None where a part is not a port or a range of ports."""
    ranges: list[tuple[int, int]] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        low_text, _, high_text = part.partition("-")
        high_text = high_text or low_text
        if not (low_text.isascii() and low_text.isdigit() and high_text.isascii()):
            return None
        if not high_text.isdigit() or len(low_text) > 5 or len(high_text) > 5:
            return None
        low, high = int(low_text), int(high_text)
        if not 0 <= low <= high <= 65535:
            return None
        ranges.append((low, high))
    return tuple(ranges)


def parse_counter_pairs(text: str) -> dict[str, int]:
    """Parse /proc/net/netstat or /proc/net/snmp: a line of names, then a line of values, per
    prefix. ``TcpExt: ListenOverflows …`` / ``TcpExt: 12 …`` gives ``TcpExt.ListenOverflows``."""
    counters: dict[str, int] = {}
    lines = text.splitlines()
    for names_line, values_line in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, names = names_line.partition(":")
        value_prefix, _, values = values_line.partition(":")
        if prefix != value_prefix or prefix not in ("Tcp", "TcpExt"):
            continue
        for name, value in zip(names.split(), values.split(), strict=False):
            try:
                counters[f"{prefix}.{name}"] = int(value)
            except ValueError:
                continue
    return counters


def parse_sockstat(text: str) -> dict[str, int]:
    """``TCP: inuse 1 orphan 0 tw 8 alloc 1 mem 145`` gives ``sockstat.TCP.tw`` = 8, …"""
    counters: dict[str, int] = {}
    for line in text.splitlines():
        prefix, _, rest = line.partition(":")
        if prefix not in ("TCP", "TCP6", "sockets"):
            continue
        words = rest.split()
        for name, value in zip(words[::2], words[1::2], strict=False):
            if _is_number(value) and len(value) <= 20:
                counters[f"sockstat.{prefix}.{name}"] = int(value)
    return counters


def read_counters(proc_root: Path) -> dict[str, int]:
    counters: dict[str, int] = {}
    for name in ("net/snmp", "net/netstat"):
        text = _read_text(f"{proc_root}/{name}")
        if text:
            counters.update(parse_counter_pairs(text))
    for name in ("net/sockstat", "net/sockstat6"):
        text = _read_text(f"{proc_root}/{name}")
        if text:
            counters.update(parse_sockstat(text))
    # Entries in this namespace's connection-tracking table (absent without nf_conntrack).
    conntrack = _read_int(Path(proc_root) / "sys/net/netfilter/nf_conntrack_count")
    if conntrack is not None:
        counters["conntrack.count"] = conntrack
    return dict(sorted(counters.items()))


# --- the whole snapshot -------------------------------------------------------------------------


def read_tables(proc_root: Path, *, strict: bool = False) -> tuple[list[Socket], list[str], int]:
    """Both TCP tables below ``proc_root``, with notes on what was dropped or skipped, and
    how many rows were skipped. Where there were rows and not one could be read, the tables
    are not what we take them for: that is an error, not an empty host."""
    sockets: list[Socket] = []
    notes: list[str] = []
    skipped: list[tuple[str, int, str]] = []  # (file, line number, reason)
    for name, family in (("net/tcp", Family.IPV4), ("net/tcp6", Family.IPV6)):
        path = proc_root / name
        try:
            with _open_table(path) as handle:
                parsed = parse_table(handle, family, str(path), strict=strict)
        except FileNotFoundError:
            if family is Family.IPV6:  # a kernel without IPv6
                continue
            raise ProcParseError(str(path), "does not exist") from None
        except OSError as error:
            raise ProcParseError(str(path), error.strerror or str(error)) from None
        sockets.extend(parsed.sockets)
        if parsed.duplicates:
            notes.append(
                f"{path}: {parsed.duplicates} row(s) listed a socket a second time "
                "(the kernel's table changed while it was read); counted once"
            )
        for number, reason in parsed.skipped:
            notes.append(f"{path}:{number}: line skipped: {reason}")
            skipped.append((str(path), number, reason))
    if skipped and not sockets:
        where, number, reason = skipped[0]
        raise ProcParseError(where, no_row_readable(len(skipped), reason), line=number)
    return sockets, notes, len(skipped)


def no_row_readable(skipped: int, first_reason: str) -> str:
    """The problem of a table whose rows are all unreadable, given the first one's reason."""
    if skipped == 1:
        return f"its only row cannot be read as a TCP socket: {first_reason}"
    return f"none of its {skipped:,} rows can be read as a TCP socket; the first: {first_reason}"


def collect(
    proc_root: Path = Path("/proc"), *, with_processes: bool = True, strict: bool = False
) -> Snapshot:
    """Look at the host (or the copied /proc tree) below ``proc_root``."""
    taken_at = time.time()
    with gcpause.paused():
        sockets, notes, skipped = read_tables(proc_root, strict=strict)
    live = proc_root == Path("/proc")
    snapshot = assemble(
        sockets,
        notes,
        proc_root,
        taken_at=taken_at,
        source="procfs" if live else f"procfs:{proc_root}",
        with_processes=with_processes,
    )
    return replace(snapshot, skipped_lines=skipped)


_PIDS = operator.attrgetter("pids")


def read_holders(
    pid_tuples: Iterable[tuple[int, ...]], scan: FdScan, proc_root: Path
) -> tuple[list[Process], int]:
    """The processes holding sockets (each distinct pid of ``pid_tuples``, in pid order), and
    how many of them exited before they were read. A holder that exited between the fd walk
    and reading its name is still listed (its sockets name its pid): a race of a busy host,
    not an error."""
    users: dict[int, str | None] = {}
    holders = sorted({pid for pids in pid_tuples for pid in pids})
    processes = [read_process(proc_root, pid, scan.open_fds.get(pid), users) for pid in holders]
    exited = sum(
        1
        for process in processes
        if process.name is None and not os.path.isdir(f"{proc_root}/{process.pid}")
    )
    return processes, exited


def assemble(
    sockets: list[Socket],
    notes: list[str],
    proc_root: Path,
    *,
    taken_at: float,
    source: str,
    with_processes: bool,
    scan: FdScan | None = None,
    found: Sorted | None = None,
) -> Snapshot:
    """Complete a socket list into a snapshot: owners (one /proc/*/fd walk), the owning
    processes, host facts, sysctls and counters -- all read below ``proc_root``. Shared by
    every source that reads the socket table some other way (netlink).

    A source that walked /proc/*/fd itself and built its sockets with their owners passes
    that ``scan``; only the listener credit for unaccepted sockets is left to do then, in the
    list given (which the caller hands over). ``found``: what the source's own pass over
    exactly these sockets found for it (:class:`~tcphealth.sources.owners.Sorted`)."""
    processes: list[Process] = []
    if with_processes:
        if scan is None:
            scan = scan_fds(proc_root)
            sockets, unseen = attribute(sockets, scan)
        else:
            credit_in_place(sockets, found)  # the caller's list: it built it for this snapshot
            # The walk ran while the table was read: look again for what it could not see.
            sockets, unseen = second_look(
                sockets, scan, proc_root, None if found is None else found.unseen
            )
        # The distinct pid tuples first, in C: a few among 300,000 sockets.
        processes, attribution = holders_read(
            set(map(_PIDS, sockets)), scan, unseen, notes, proc_root
        )
    else:
        attribution = Attribution(attempted=False)
    return host_snapshot(sockets, notes, proc_root, taken_at, source, processes, attribution)


def holders_read(
    pid_tuples: Iterable[tuple[int, ...]],
    scan: FdScan,
    unseen: int,
    notes: list[str],
    proc_root: Path,
) -> tuple[list[Process], Attribution]:
    """The processes holding sockets, and what the attribution of the sockets to them came
    to (``unseen``: sockets no process we read holds); the notes that says, added to
    ``notes``."""
    processes, exited = read_holders(pid_tuples, scan, proc_root)
    if exited:
        notes.append(
            f"{exited} process(es) holding sockets exited while they were read; "
            "their sockets show the pid without a name"
        )
    attribution = Attribution(
        attempted=True,
        processes_scanned=scan.scanned,
        processes_vanished=scan.vanished + exited,
        processes_forbidden=scan.forbidden,
        sockets_unseen=unseen,
    )
    if scan.forbidden:
        notes.append(
            f"the file descriptors of {scan.forbidden} process(es) were not readable, so "
            f"{unseen} socket(s) have no known owner; run as root to see them"
        )
    elif unseen:
        notes.append(unseen_owner_note(unseen))
    return processes, attribution


def host_snapshot(
    sockets: Iterable[Socket],
    notes: list[str],
    proc_root: Path,
    taken_at: float,
    source: str,
    processes: Iterable[Process],
    attribution: Attribution,
) -> Snapshot:
    """The snapshot of ``sockets`` with the host's facts, sysctls and counters read below
    ``proc_root``."""
    hostname = _read_text(f"{proc_root}/sys/kernel/hostname")
    kernel = _read_text(f"{proc_root}/sys/kernel/osrelease")
    live = proc_root == Path("/proc")
    host = HostInfo(
        hostname=hostname.strip() if hostname else (socket_module.gethostname() if live else None),
        kernel=kernel.strip() if kernel else None,
        taken_at=taken_at,
        source=source,
        privileged=(os.geteuid() == 0) if live else None,
        platform="linux",
    )
    return Snapshot(
        host=host,
        attribution=attribution,
        sysctls=read_sysctls(proc_root),
        counters=read_counters(proc_root),
        processes=tuple(processes),
        sockets=tuple(sockets),
        notes=tuple(notes),
    )
