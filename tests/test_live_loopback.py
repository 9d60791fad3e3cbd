"""The kernel is the oracle: real loopback sockets in this test process (IPv4 and ::1), read by
tcphealth and by ``ss -tan`` at the same moment, must agree on state, queues and owners.

Every socket is closed and the forked child is stopped by pid in the fixture's teardown, also
when a test fails. Nothing here leaves loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tcphealth.model import Endpoint, OwnerSource, Snapshot, Socket, TcpState, parse_state
from tcphealth.sources import netlink, procfs

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

WAIT_SECONDS = 20.0  # generous: a loaded host (300k sockets) makes each ss call slow
PAYLOAD = b"x" * 100


@dataclass
class Scene:
    family: socket.AddressFamily
    host: str
    sockets: list[socket.socket] = field(default_factory=list)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # role -> port
    # (local, peer) of every connection of this scene, both ends, as ss prints them. Rows are
    # ours by their 4-tuple, not by port alone: a TIME_WAIT left by an earlier scene can share
    # a port number with one of this scene's listeners.
    pairs: set[tuple[str, str]] = field(default_factory=set)
    listening: set[str] = field(default_factory=set)

    def make(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        self.sockets.append(sock)
        return sock

    def listener(self, role: str, backlog: int) -> socket.socket:
        sock = self.make()
        sock.bind((self.host, 0))
        sock.listen(backlog)
        self.ports[role] = sock.getsockname()[1]
        self.listening.add(text(sock.getsockname()))
        return sock

    def remember(self, local: tuple[str, int], peer: tuple[str, int]) -> None:
        self.pairs |= {(text(local), text(peer)), (text(peer), text(local))}

    def owns(self, state: TcpState, local: str, peer: str) -> bool:
        if state is TcpState.LISTEN:
            return local in self.listening
        return (local, peer) in self.pairs

    def connect(self, port: int, *, blocking: bool = True) -> socket.socket:
        sock = self.make()
        if blocking:
            sock.connect((self.host, port))
        else:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((self.host, port))
        return sock

    def close(self) -> None:
        for child in self.children:
            child.kill()  # by pid: only the child this scene started
            child.wait(timeout=5)
            if child.stdin is not None:
                child.stdin.close()
        for sock in self.sockets:
            sock.close()


COLLECTORS: dict[str, Callable[[], Snapshot]] = {
    "procfs": procfs.collect,
    "netlink": netlink.collect,
}


@pytest.fixture(params=sorted(COLLECTORS))
def collect(request: pytest.FixtureRequest) -> Callable[[], Snapshot]:
    if request.param == "netlink" and not netlink.available():
        pytest.skip("netlink sock_diag is not available here")
    return COLLECTORS[request.param]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")


def text(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """An address as ss (and tcphealth) print it: ``127.0.0.1:80``, ``[::1]:80``."""
    return str(Endpoint(ipaddress.ip_address(address[0]), address[1]))


def ss_rows(scene: Scene) -> list[tuple[TcpState, str, str, int, int]]:
    """(state, local, peer, recv-q, send-q) of every ss row of the scene's sockets."""
    output = subprocess.run(
        ["ss", "-tanH"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    rows = []
    for line in output.splitlines():
        state_text, recv_q, send_q, local, peer = line.split()[:5]
        state = parse_state(state_text)
        assert state is not None, line
        if scene.owns(state, local, peer):
            rows.append((state, local, peer, int(recv_q), int(send_q)))
    return rows


def ours(snapshot: Snapshot, scene: Scene) -> list[Socket]:
    return [s for s in snapshot.sockets if scene.owns(s.state, str(s.local), str(s.remote))]


@pytest.fixture(params=[socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def scene(request: pytest.FixtureRequest) -> Iterator[Scene]:
    family = request.param
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("this host has no IPv6")
    built = Scene(family, host)
    try:
        build(built)
        yield built
    finally:
        built.close()


def build(scene: Scene) -> None:
    main = scene.listener("main", 8)

    # ESTABLISHED both ends, 100 bytes the receiving application never read.
    sender = scene.connect(scene.ports["main"])
    receiver, _ = main.accept()
    scene.sockets.append(receiver)
    scene.remember(sender.getsockname(), sender.getpeername())
    sender.sendall(PAYLOAD)

    # The peer half-closes: it sits in FIN_WAIT2 still holding its descriptor, and the side
    # that received the FIN sits in CLOSE_WAIT with the FIN as its one unread "byte".
    half_closer = scene.connect(scene.ports["main"])
    close_waiter, _ = main.accept()
    scene.sockets.append(close_waiter)
    scene.remember(half_closer.getsockname(), half_closer.getpeername())
    half_closer.shutdown(socket.SHUT_WR)

    # The active closer of a finished connection ends in TIME_WAIT.
    active_closer = scene.connect(scene.ports["main"])
    passive, _ = main.accept()
    scene.remember(active_closer.getsockname(), active_closer.getpeername())
    active_closer.close()
    wait_until(lambda: passive.recv(1) == b"", "the FIN to reach the passive side")
    passive.close()

    # A listener nobody accepts from: listen(1) holds backlog+1 = 2 finished connections in
    # its accept queue; the third client's SYN is dropped and it stays in SYN_SENT.
    full = scene.listener("full", 1)
    for _ in range(3):
        client = scene.connect(scene.ports["full"], blocking=False)
        scene.remember(client.getsockname(), full.getsockname())

    # A listener shared with a forked child that inherited the descriptor.
    shared = scene.listener("shared", 4)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        pass_fds=[shared.fileno()],
        stdin=subprocess.PIPE,
    )
    scene.children.append(child)

    expected = {
        TcpState.LISTEN: 3,
        TcpState.ESTABLISHED: 6,
        TcpState.FIN_WAIT2: 1,
        TcpState.CLOSE_WAIT: 1,
        TcpState.TIME_WAIT: 1,
        TcpState.SYN_SENT: 1,
    }

    def settled() -> bool:
        rows = ss_rows(scene)
        queued = {(r[0], r[3]) for r in rows}
        return (
            Counter(r[0] for r in rows) == expected
            and (TcpState.CLOSE_WAIT, 1) in queued
            and (TcpState.ESTABLISHED, len(PAYLOAD)) in queued
            and (TcpState.LISTEN, 2) in queued
        )

    wait_until(settled, f"ss to show {expected}")
    wait_until(lambda: any("socket:[" in t for t in _child_fds(child.pid)), "the child to start")


def _child_fds(pid: int) -> list[str]:
    try:
        return [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def test_state_counts_match_ss(scene: Scene, collect: Callable[[], Snapshot]) -> None:
    before = Counter(r[0] for r in ss_rows(scene))
    snap = collect()
    after = Counter(r[0] for r in ss_rows(scene))
    assert before == after  # nothing moved while we looked
    assert Counter(s.state for s in ours(snap, scene)) == before


def test_queues_and_states_match_ss_per_socket(
    scene: Scene, collect: Callable[[], Snapshot]
) -> None:
    oracle = {(r[0], r[1], r[2]): (r[3], r[4]) for r in ss_rows(scene)}
    snap = collect()
    seen: dict[tuple[TcpState, str, str], tuple[int | None, int | None]] = {}
    for sock in ours(snap, scene):
        remote = str(sock.remote)
        if sock.remote.is_unspecified:  # ss writes a listener's peer as "0.0.0.0:*"
            remote = "0.0.0.0:*" if scene.family == socket.AF_INET else "[::]:*"
        key = (sock.state, str(sock.local), remote)
        if sock.state is TcpState.LISTEN:
            # ss shows a listener's maximum backlog as Send-Q: netlink has it, /proc does not.
            assert sock.listen_backlog in (None, oracle[key][1])
            send: int | None = (
                oracle[key][1] if sock.listen_backlog is None else sock.listen_backlog
            )
        else:
            send = sock.send_queue
        seen[key] = (sock.recv_queue, send)
    assert seen == oracle


def test_owners_every_pid_and_listener_credit(
    scene: Scene, collect: Callable[[], Snapshot]
) -> None:
    me = os.getpid()
    child_pid = scene.children[0].pid
    snap = collect()
    mine = ours(snap, scene)

    shared = next(
        s for s in mine if s.state is TcpState.LISTEN and s.local.port == scene.ports["shared"]
    )
    assert shared.pids == tuple(sorted((me, child_pid)))
    assert shared.owner_source is OwnerSource.FD

    full = next(
        s for s in mine if s.state is TcpState.LISTEN and s.local.port == scene.ports["full"]
    )
    assert full.recv_queue == 2  # backlog 1 holds backlog + 1 connections
    unaccepted = [
        s for s in mine if s.local.port == scene.ports["full"] and s.state is TcpState.ESTABLISHED
    ]
    assert len(unaccepted) == 2
    assert {(s.inode, s.pids, s.owner_source) for s in unaccepted} == {
        (0, (me,), OwnerSource.LISTENER)
    }

    (close_wait,) = [s for s in mine if s.state is TcpState.CLOSE_WAIT]
    assert (close_wait.recv_queue, close_wait.pids, close_wait.owner_source) == (
        1,
        (me,),
        OwnerSource.FD,
    )
    (fin_wait2,) = [s for s in mine if s.state is TcpState.FIN_WAIT2]
    assert fin_wait2.pids == (me,)  # half-closed and still held: not an orphan
    assert fin_wait2.is_orphan is False
    assert fin_wait2.remote == close_wait.local

    (time_wait,) = [s for s in mine if s.state is TcpState.TIME_WAIT]
    assert (time_wait.pids, time_wait.owner_source, time_wait.inode) == ((), OwnerSource.NONE, 0)
    assert time_wait.timer_seconds is not None and 0 < time_wait.timer_seconds <= 60

    (syn_sent,) = [s for s in mine if s.state is TcpState.SYN_SENT]
    assert syn_sent.pids == (me,)
    assert syn_sent.remote.port == scene.ports["full"]

    reader = next(s for s in mine if s.recv_queue == len(PAYLOAD))
    assert reader.state is TcpState.ESTABLISHED
    assert reader.local.port == scene.ports["main"]

    processes = {p.pid: p for p in snap.processes}
    assert processes[me].name == Path(f"/proc/{me}/comm").read_text().strip()
    open_fds = processes[me].open_fds
    assert open_fds is not None and open_fds >= len(scene.sockets)
    child_cmdline = processes[child_pid].cmdline
    assert child_cmdline is not None and child_cmdline[:2] == (sys.executable, "-c")


def test_netlink_and_procfs_agree(scene: Scene) -> None:
    if not netlink.available():
        pytest.skip("netlink sock_diag is not available here")

    def view(snapshot: Snapshot) -> set[tuple[object, ...]]:
        return {
            (s.state, str(s.local), str(s.remote), s.recv_queue, s.inode, s.pids, s.owner_source)
            for s in ours(snapshot, scene)
        }

    from_proc = view(procfs.collect())
    from_netlink = netlink.collect()
    assert view(from_netlink) == from_proc
    full = next(
        s
        for s in ours(from_netlink, scene)
        if s.state is TcpState.LISTEN and s.local.port == scene.ports["full"]
    )
    assert (full.recv_queue, full.listen_backlog) == (2, 1)
    (close_wait,) = [s for s in ours(from_netlink, scene) if s.state is TcpState.CLOSE_WAIT]
    assert close_wait.shutdown == 1
    assert close_wait.tcp_info is not None
    assert close_wait.tcp_info.last_data_recv_ms is not None
