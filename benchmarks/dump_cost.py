"""What the kernel's sock_diag dump costs per request shape (issue 23, session 15).

    python -m benchmarks.dump_cost [--rounds 5] [--buffer 1048576]

Receives this host's TCP dump (both families) with each request shape below, ``--rounds``
times each (the shapes interleaved round by round), and prints per shape the median user
and system CPU seconds of one whole dump (both families) in this process, the bytes and
datagrams it came in. The bytes are received into one buffer and dropped: what is measured
is the kernel building the dump and the ``recv`` calls, nothing of the decoding.

The kernel fills a dump's datagrams inside the reader's ``recv`` (netlink_recvmsg calls
netlink_dump), so its system time is this process's. Run it beside a load (the load
generator) of a known size; under the suite lock at 100,000 sockets and more.

Never part of ``make test``: the numbers go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import struct
import time
from dataclasses import dataclass

from tcphealth.sources import netlink
from tcphealth.sources.dump_relay import NETLINK_SOCK_DIAG, NLMSG_DONE, NLMSG_ERROR

# include/uapi/linux/inet_diag.h: the extensions a request may ask for (bit = 1 << (n - 1)).
MEMINFO, INFO, VEGASINFO, CONG, TOS, TCLASS, SKMEMINFO, SHUTDOWN = 1, 2, 3, 4, 5, 6, 7, 8
TIME_WAIT_BIT = 1 << 6
ALL = 0xFFFFFFFF


def bit(*extensions: int) -> int:
    mask = 0
    for extension in extensions:
        mask |= 1 << (extension - 1)
    return mask


@dataclass(frozen=True)
class Shape:
    name: str
    parts: tuple[tuple[int, int], ...]  # (extensions, states) per dump, per family
    # TCPDIAG_GETSOCK's request (inet_diag_req): one dump of both families (AF_UNSPEC), so
    # one walk of the kernel's tables instead of one per family
    both_at_once: bool = False


SHAPES = (
    Shape("no extension (shutdown only)", ((bit(SHUTDOWN), ALL),)),
    Shape("tcp_info", ((bit(SHUTDOWN, INFO), ALL),)),
    Shape("skmeminfo", ((bit(SHUTDOWN, SKMEMINFO), ALL),)),
    Shape("tcp_info + skmeminfo (today)", ((bit(SHUTDOWN, INFO, SKMEMINFO), ALL),)),
    Shape(
        "every extension (+meminfo, cong, tos, tclass)",
        ((bit(SHUTDOWN, INFO, SKMEMINFO, MEMINFO, CONG, TOS, TCLASS), ALL),),
    ),
    Shape(
        "today, split: TIME_WAIT alone + the rest",
        (
            (0, TIME_WAIT_BIT),
            (bit(SHUTDOWN, INFO, SKMEMINFO), ALL & ~TIME_WAIT_BIT),
        ),
    ),
    Shape(
        "today, both families in one dump (TCPDIAG_GETSOCK)",
        ((bit(SHUTDOWN, INFO, SKMEMINFO), ALL),),
        both_at_once=True,
    ),
    Shape("TIME_WAIT only", ((0, TIME_WAIT_BIT),)),
    Shape(
        "all but TIME_WAIT, today's extensions",
        ((bit(SHUTDOWN, INFO, SKMEMINFO), ALL & ~TIME_WAIT_BIT),),
    ),
)


TCPDIAG_GETSOCK = 18


def compat_request(extensions: int, states: int) -> bytes:
    """inet_diag_req: family, src_len, dst_len, ext, sockid (48 bytes), states, dbs."""
    body = struct.pack("=BBBB", socket.AF_INET, 0, 0, extensions) + bytes(48)
    body += struct.pack("=II", states, 0)
    header = struct.pack("=IHHII", 16 + len(body), TCPDIAG_GETSOCK, 0x301, 1, 0)
    return header + body


def request(family: int, extensions: int, states: int) -> bytes:
    body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, extensions, states)
    body += bytes(48)  # inet_diag_sockid: match any socket
    header = struct.pack("=IHHII", 16 + len(body), netlink.SOCK_DIAG_BY_FAMILY, 0x301, 1, 0)
    return header + body


def dump_once(
    family: int, extensions: int, states: int, buffer: bytearray, rcvbuf: int, both: bool = False
) -> tuple[int, int]:
    """Bytes and datagrams of one dump, received and dropped."""
    view = memoryview(buffer)
    total = datagrams = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as channel:
        if rcvbuf:
            channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        asked = compat_request(extensions, states) if both else request(family, extensions, states)
        channel.sendto(asked, (0, 0))
        while True:
            size = channel.recv_into(view)
            total += size
            datagrams += 1
            offset = 0
            done = False
            while offset + 16 <= size:
                length, kind = struct.unpack_from("=IH", buffer, offset)
                if kind in (NLMSG_DONE, NLMSG_ERROR):
                    done = True
                    break
                if length < 16:
                    raise RuntimeError("broken message")
                offset += (length + 3) & ~3
            if done:
                return total, datagrams


def measure(shape: Shape, buffer: bytearray, rcvbuf: int) -> tuple[float, float, float, int, int]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    total = datagrams = 0
    families = (socket.AF_UNSPEC,) if shape.both_at_once else (socket.AF_INET, socket.AF_INET6)
    for extensions, states in shape.parts:
        for family in families:
            size, count = dump_once(
                family, extensions, states, buffer, rcvbuf, both=shape.both_at_once
            )
            total += size
            datagrams += count
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        wall,
        total,
        datagrams,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dump_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--buffer", type=int, default=netlink.RECEIVE_BUFFER, help="recv size")
    parser.add_argument("--rcvbuf", type=int, default=0, help="SO_RCVBUF (0: the default)")
    parser.add_argument("--only", default="", help="only the shapes whose name contains this")
    args = parser.parse_args(argv)
    shapes = [shape for shape in SHAPES if args.only in shape.name]
    buffer = bytearray(args.buffer)
    results: dict[str, list[tuple[float, float, float, int, int]]] = {s.name: [] for s in shapes}
    for shape in shapes:  # a warm-up of each
        measure(shape, buffer, args.rcvbuf)
    for _ in range(args.rounds):
        for shape in shapes:
            results[shape.name].append(measure(shape, buffer, args.rcvbuf))
    rcvbuf = args.rcvbuf or "default"
    print(f"load average {os.getloadavg()[0]:.2f}; recv size {args.buffer}; rcvbuf {rcvbuf}")
    heads = ("user s", "sys s", "cpu s", "wall s", "MB", "dgrams")
    print(f"{'shape':52} " + " ".join(f"{head:>7}" for head in heads))
    for shape in shapes:
        rows = results[shape.name]
        user = statistics.median(row[0] for row in rows)
        system = statistics.median(row[1] for row in rows)
        cpu = statistics.median(row[0] + row[1] for row in rows)
        wall = statistics.median(row[2] for row in rows)
        print(
            f"{shape.name:52} {user:7.3f} {system:7.3f} {cpu:7.3f} {wall:7.3f} "
            f"{rows[0][3] / 1e6:7.2f} {rows[0][4]:7d}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
