"""How long the netlink decoder takes, without a live dump: the recorded reply of
fixtures/netlink/ and a large reply made of its messages repeated (each with its own inode and
cookie), best of several rounds.

    python -m benchmarks.netlink_decode --sockets 100000
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

from tcphealth.sources.dump_relay import NLMSG_DONE
from tcphealth.sources.netlink import Decoder

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "netlink" / "tcp4-dump.bin"
_HEADER = struct.Struct("=IHHII")
_INODE_AT = 16 + 68  # nlmsghdr, then inet_diag_msg's idiag_inode
_COOKIE_AT = 16 + 4 + 36 + 4  # nlmsghdr, family..retrans, sport..dst, if: the cookie's low half


def split(reply: bytes) -> tuple[list[bytes], bytes]:
    """The socket messages of a reply, and its NLMSG_DONE message."""
    messages: list[bytes] = []
    done = b""
    offset = 0
    while offset < len(reply):
        length, kind = _HEADER.unpack_from(reply, offset)[:2]
        padded = (length + 3) & ~3
        if kind == NLMSG_DONE:
            done = reply[offset : offset + padded]
        else:
            messages.append(reply[offset : offset + padded])
        offset += padded
    return messages, done


def generated(messages: list[bytes], done: bytes, sockets: int) -> bytes:
    out = bytearray()
    for number in range(sockets):
        message = bytearray(messages[number % len(messages)])
        struct.pack_into("=I", message, _INODE_AT, 1000 + number)
        struct.pack_into("=I", message, _COOKIE_AT, number)
        out += message
    return bytes(out + done)


def best(reply: bytes, rounds: int, repeat: int) -> float:
    """The fastest round's seconds per decode."""
    view = memoryview(reply)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            Decoder().drafts(view, "benchmark")
        times.append((time.perf_counter() - started) / repeat)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    recorded = RECORDED.read_bytes()
    messages, done = split(recorded)
    small = best(recorded, args.rounds, 2000)
    large = best(generated(messages, done, args.sockets), args.rounds, 1)
    print(f"recorded reply ({len(messages)} sockets): {small * 1e6:.1f} us per decode")
    print(
        f"generated reply ({args.sockets:,} sockets): {large * 1e3:.1f} ms per decode, "
        f"{large / args.sockets * 1e6:.2f} us per socket"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
