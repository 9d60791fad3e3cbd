"""A pasted ``ss -tinm`` fills the same model fields netlink does (issue #22): the segments the
kernel dropped on arrival (skmem's ``d``) and where a sender's time went (busy, rwnd-limited).

On loopback: a receiver with a tiny receive buffer that never reads, and a sender that fills
it. ``ss -tinm`` is run for the pair, read back as a paste, and compared with what netlink
gives for the same two sockets right after (the counters only grow, so the paste's value is at
most netlink's; ss prints whole milliseconds of what the kernel counts in microseconds)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcphealth.model import Socket
from tcphealth.sources import load, netlink

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)"),
]


@pytest.fixture
def stalled_pair() -> Iterator[tuple[int, int]]:
    """(the receiver's port, the sender's port): the sender's data fills a receiver that never
    reads; both closed when the test ends, passed or not."""
    opened: list[socket.socket] = []
    try:
        server = socket.socket()
        opened.append(server)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited on accept
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sender = socket.create_connection(server.getsockname(), timeout=5)
        opened.append(sender)
        receiver, _ = server.accept()
        opened.append(receiver)
        sender.setblocking(False)
        deadline = time.monotonic() + 1.5  # bounded: the buffers fill within a few sends
        while time.monotonic() < deadline:
            try:
                sender.send(b"x" * 65536)
            except BlockingIOError:
                time.sleep(0.05)
        yield receiver.getsockname()[1], sender.getsockname()[1]
    finally:
        for sock in opened:
            sock.close()


def by_local_port(sockets: tuple[Socket, ...], ports: tuple[int, int]) -> dict[int, Socket]:
    return {
        s.local.port: s
        for s in sockets
        if s.local.port in ports and s.remote.port in ports and str(s.local.address) == "127.0.0.1"
    }


def test_pasted_ss_tinm_gives_netlinks_drops_and_sender_times(
    stalled_pair: tuple[int, int], tmp_path: Path
) -> None:
    receiver_port, sender_port = stalled_pair
    ports = (receiver_port, sender_port)
    command = [
        "ss",
        "-tinm",
        f"( sport = :{receiver_port} and dport = :{sender_port} ) or "
        f"( sport = :{sender_port} and dport = :{receiver_port} )",
    ]
    text = subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout
    paste = tmp_path / "ss.txt"
    paste.write_text(f"# {' '.join(command[:2])}\n{text}", encoding="utf-8")
    pasted = by_local_port(load(paste).sockets, ports)
    live = by_local_port(netlink.collect(with_processes=False).sockets, ports)
    assert set(pasted) == set(live) == set(ports), text

    receiver, live_receiver = pasted[receiver_port], live[receiver_port]
    assert receiver.drops is not None and live_receiver.drops is not None
    assert 0 < receiver.drops <= live_receiver.drops, text

    sender, live_sender = pasted[sender_port], live[sender_port]
    assert sender.tcp_info is not None and live_sender.tcp_info is not None
    for field in ("busy_time_us", "rwnd_limited_us"):
        got = getattr(sender.tcp_info, field)
        kernel = getattr(live_sender.tcp_info, field)
        assert got is not None and kernel is not None, (field, text)
        assert 0 < got <= kernel, (field, got, kernel, text)
        assert got % 1000 == 0  # whole milliseconds, as ss prints them
    # not printed by ss (it prints a limit only when nonzero): 0, never more than the kernel's
    sndbuf = sender.tcp_info.sndbuf_limited_us
    assert sndbuf is not None and sndbuf <= (live_sender.tcp_info.sndbuf_limited_us or 0)
