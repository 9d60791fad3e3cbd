"""The kernel is the oracle for sockets in CLOSE held by this process (issue #22): made for real
on loopback -- connects refused, a connection reset, sockets bound and never connected -- with
every descriptor kept, then read by tcphealth's netlink collector, /proc/net/tcp and ``ss``.

What Linux lists of them (checked here): a CLOSE socket appears in netlink's dump only while it
owns a port it bound itself (bind() to a chosen port, or bound and never connected), and only
when the dump asks for bound-only sockets, as tcphealth's does (kernels 6.8 and later).
A socket whose connect() picked its port gives the port back when the connection is refused or
reset, and no table lists it; /proc/net/tcp lists no CLOSE socket at all. Every socket opened
here is closed in the fixture's teardown, also when a test fails; nothing leaves loopback.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Severity, TcpState
from tcphealth.sources import netlink

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux netlink"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)"),
]

BOUND_REFUSED = 60  # bound to a chosen port, then connect() refused: keeps its port
BOUND_ONLY = 50  # bound, never connected
AUTO_REFUSED = 10  # connect() picked the port, then refused: gives it back
HOST = "127.0.0.1"


@dataclass
class Scene:
    sockets: list[socket.socket] = field(default_factory=list)
    bound_refused: set[int] = field(default_factory=set)
    bound_only: set[int] = field(default_factory=set)
    unlisted: set[int] = field(default_factory=set)  # ports given back: auto-bound, reset

    def make(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sockets.append(sock)
        return sock


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def _refused(sock: socket.socket, port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        sock.connect((HOST, port))


@pytest.fixture
def scene() -> Iterator[Scene]:
    made = Scene()
    try:
        # Nobody listens there, and nobody can: a socket of ours holds the port bound, never
        # listening, without SO_REUSEADDR, so each connect is refused (a port only found free
        # was once taken by another suite's listener before the connects ran). It is one of
        # the bound-only sockets itself.
        guard = made.make()
        guard.bind((HOST, 0))
        closed_port = guard.getsockname()[1]
        made.bound_only.add(closed_port)
        for _ in range(BOUND_REFUSED):
            for _attempt in range(20):  # the port found free may be taken before bind()
                sock = made.make()
                with contextlib.suppress(OSError):
                    # A port given to bind() sets SOCK_BINDPORT_LOCK: it is kept after a failure.
                    sock.bind((HOST, _free_port()))
                    break
                made.sockets.remove(sock)
                sock.close()
            else:
                pytest.fail("no free loopback port to bind in 20 attempts")
            _refused(sock, closed_port)
            made.bound_refused.add(sock.getsockname()[1])
        for _ in range(BOUND_ONLY):
            sock = made.make()
            sock.bind((HOST, 0))
            made.bound_only.add(sock.getsockname()[1])
        for _ in range(AUTO_REFUSED):
            sock = made.make()
            _refused(sock, closed_port)
            made.unlisted.add(sock.getsockname()[1])
        # An ESTABLISHED connection the peer resets (SO_LINGER 0): the client end goes to CLOSE.
        server = made.make()
        server.bind((HOST, 0))
        server.listen(1)
        client = made.make()
        client.settimeout(10)
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        accepted.close()
        with pytest.raises(ConnectionResetError):
            client.recv(1)
        made.unlisted.add(client.getsockname()[1])
        yield made
    finally:
        for sock in made.sockets:
            sock.close()


def test_held_close_sockets_as_the_kernel_lists_them(scene: Scene) -> None:
    pid = os.getpid()
    snap = netlink.collect()
    ours = {
        sock.local.port
        for sock in snap.sockets
        if sock.state is TcpState.CLOSE and pid in sock.pids and sock.local.port is not None
    }
    if not ours & scene.bound_only:
        pytest.skip("this kernel does not dump bound-only sockets (Linux 6.8 and later do)")
    # Listed: every socket that kept a port it bound, each held by this process.
    assert scene.bound_refused <= ours
    assert scene.bound_only <= ours
    # Not listed: the ports connect() picked and gave back (refused, reset).
    assert not (scene.unlisted & ours)
    # /proc/net/tcp lists no CLOSE socket of ours at all (state 07).
    proc_ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "07":
            proc_ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    assert not proc_ports & (scene.bound_refused | scene.bound_only | scene.unlisted)
    # ss lists no more than tcphealth does (ss before 6.8's bound-inactive asks for none).
    out = subprocess.run(
        ["ss", "-tanH", "state", "close"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    ss_ports = {int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if line}
    assert ss_ports & (scene.bound_refused | scene.bound_only) <= ours
    # Every socket is a descriptor, listed or not: the fd table holds them all.
    socket_fds = sum(
        1
        for fd in os.listdir("/proc/self/fd")
        if _link(f"/proc/self/fd/{fd}").startswith("socket:")
    )
    assert socket_fds >= BOUND_REFUSED + BOUND_ONLY + AUTO_REFUSED + 1

    # The diagnosis: this process holds a pile of CLOSE, a descriptor leak.
    held = [
        finding
        for finding in diagnose(snap)
        if finding.code == "close-held" and finding.subject.pids == (pid,)
    ]
    assert len(held) == 1
    (finding,) = held
    mine = sum(1 for sock in snap.sockets if sock.state is TcpState.CLOSE and pid in sock.pids)
    assert finding.count == mine >= BOUND_REFUSED + BOUND_ONLY
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_limit = soft != resource.RLIM_INFINITY and mine / soft >= 0.8
    expected = Severity.CRITICAL if by_limit or mine >= 1000 else Severity.WARNING
    assert finding.severity is expected
    assert finding.state is TcpState.CLOSE


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed between listdir and readlink
        return ""
