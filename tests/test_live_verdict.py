"""One verdict however you look (issue #21), on trouble made for real on loopback.

Each scene runs its processes as children of this test (so each end has its own pid), checks
what tcphealth says against ``ss``, and stops every child by pid in the fixture's teardown,
also when a test fails. Only findings about the scene's own pids are judged: other sockets of
the host are none of these tests' business. Nothing leaves loopback; every loop that opens
connections is bounded in count and in time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.rules.close_wait import NOT_CLOSED, SLOW_CLOSE
from tcphealth.diagnose.rules.closing import FIN_WAIT2_HELD
from tcphealth.diagnose.rules.handshake import SYN_SENT_TO_FULL_LISTENER, SYN_SENT_UNANSWERED
from tcphealth.filters import SocketFilter
from tcphealth.model import Blame, Finding, Severity, Snapshot, TcpState
from tcphealth.pipeline import Inputs, analyse, follow, report_of
from tcphealth.render.text import count_text
from tcphealth.report import ExitCode, Report
from tcphealth.sources import collect_live

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

WAIT_SECONDS = 20.0

# A listener that never accepts: prints its port, then waits for stdin to close.
NEVER_ACCEPTS = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(int(sys.argv[1]))
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""

# N non-blocking connects to a port, kept open.
CONNECTS = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
kept = []
for _ in range(count):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    kept.append(c)
print("ready", flush=True)
sys.stdin.read()
"""

# Accepts N connections and never reads or closes them: CLOSE_WAIT once the peer shuts down.
ACCEPTS_NEVER_CLOSES = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
kept = [s.accept()[0] for _ in range(int(sys.argv[1]))]
print("accepted", flush=True)
sys.stdin.read()
"""

# Connects N times and shuts down its sending side, keeping the descriptors: FIN_WAIT2 held.
HALF_CLOSES = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
kept = []
for _ in range(count):
    c = socket.create_connection(("127.0.0.1", port))
    c.shutdown(socket.SHUT_WR)
    kept.append(c)
print("ready", flush=True)
sys.stdin.read()
"""

# Closes each connection DELAY seconds after the peer's FIN: a slow closer, not a leak.
SLOW_CLOSER = """
import socket, sys, threading, time
delay = float(sys.argv[1])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
def serve(c):
    while c.recv(4096):
        pass
    time.sleep(delay)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


class Children:
    """Child processes of one test, each stopped by its own pid at the end."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def start(self, code: str, *args: object) -> tuple[int, str]:
        """Run ``code``; its pid and the first line it prints (a port, or "ready")."""
        child = subprocess.Popen(
            [sys.executable, "-c", code, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.running.append(child)
        assert child.stdout is not None
        return child.pid, child.stdout.readline().strip()

    def stop(self) -> None:
        for child in self.running:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait(timeout=10)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def children() -> Iterator[Children]:
    running = Children()
    try:
        yield running
    finally:
        running.stop()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def ss_count(state: str, port_filter: str, *, users: bool | None = None) -> int:
    """Rows ``ss`` lists in ``state`` matching ``port_filter``; ``users`` True/False keeps
    only rows with/without an owner."""
    out = subprocess.run(
        ["ss", "-Htanp", "state", state, port_filter],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.strip()]
    if users is not None:
        rows = [row for row in rows if ("users:" in row) == users]
    return len(rows)


def about(report: Report, pid: int) -> list[Finding]:
    return [finding for finding in report.findings if pid in finding.subject.pids]


def _unmarked(finding: Finding) -> Finding:
    return dataclasses.replace(finding, outside_filter=())


# --- 1, 4 and 5: SYN_SENT clients behind a listener that never accepts -------------------------

FAST_SYN = Thresholds(syn_sent_min_retransmits=1)
CLIENTS = 8
BACKLOG = 1  # the kernel queues BACKLOG + 1; the other clients' SYNs are dropped


@dataclasses.dataclass
class Queue:
    listener: int
    client: int
    port: int


@pytest.fixture
def full_queue(children: Children) -> Queue:
    listener, port_text = children.start(NEVER_ACCEPTS, BACKLOG)
    port = int(port_text)
    client, _ = children.start(CONNECTS, port, CLIENTS)
    queued = BACKLOG + 1

    def settled() -> bool:
        return (
            ss_count("syn-sent", f"dport = :{port}") == CLIENTS - queued
            and _min_syn_retransmits(collect_live("netlink"), port) >= 1
        )

    wait_until(settled, "the clients behind the full queue to retransmit their SYNs")
    return Queue(listener, client, port)


def _min_syn_retransmits(snapshot: Snapshot, port: int) -> int:
    counts = [
        sock.retransmits or 0
        for sock in snapshot.sockets
        if sock.state is TcpState.SYN_SENT and sock.remote.port == port
    ]
    return min(counts, default=0)


def test_a_filter_shows_the_same_verdict_on_the_syn_sent_clients(full_queue: Queue) -> None:
    snapshot = collect_live("netlink")
    whole = analyse(snapshot, thresholds=FAST_SYN)
    (blamed,) = [f for f in about(whole, full_queue.listener) if f.state is TcpState.SYN_SENT]
    assert blamed.code == SYN_SENT_TO_FULL_LISTENER
    assert blamed.blame is Blame.LOCAL_APPLICATION
    assert blamed.subject.pid == full_queue.listener
    assert full_queue.client in blamed.subject.pids
    for flt in (
        SocketFilter(states=frozenset({TcpState.SYN_SENT})),
        SocketFilter(pids=frozenset({full_queue.client})),
        SocketFilter(ports=frozenset({full_queue.port})),
    ):
        narrowed = analyse(snapshot, flt, FAST_SYN)
        mine = about(narrowed, full_queue.client)
        assert [_unmarked(f) for f in mine if f.state is TcpState.SYN_SENT] == [blamed], flt
        # Never the story of a host that is down or a firewall, with traceroute to run.
        assert not [f for f in mine if f.code == SYN_SENT_UNANSWERED], flt
        # The exit code is that of the findings shown, this one among them.
        expected = ExitCode.CRITICAL if blamed.severity is Severity.CRITICAL else ExitCode.WARNING
        assert narrowed.exit_code() >= expected, flt


def test_procfs_names_the_local_listener_whose_backlog_it_cannot_see(full_queue: Queue) -> None:
    snapshot = collect_live("procfs")
    (listener,) = [
        s
        for s in snapshot.sockets
        if s.state is TcpState.LISTEN and s.local.port == full_queue.port
    ]
    # What /proc shows: connections queued, and no backlog.
    assert (listener.recv_queue, listener.listen_backlog) == (BACKLOG + 1, None)
    report = analyse(snapshot, thresholds=FAST_SYN)
    (finding,) = [f for f in about(report, full_queue.client) if f.state is TcpState.SYN_SENT]
    assert finding.code == SYN_SENT_TO_FULL_LISTENER
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pid == full_queue.listener
    evidence = {item.name: item for item in finding.evidence}
    assert evidence["accept_queue"].value == BACKLOG + 1
    assert "local_listener" not in evidence  # never "a listener here, queue not full"
    assert any("does not give its backlog" in item for item in finding.unchecked)
    assert ss_count("syn-sent", f"dport = :{full_queue.port}") == finding.count


def test_one_story_about_the_listener_and_its_clients(full_queue: Queue) -> None:
    report = analyse(collect_live("netlink"), thresholds=FAST_SYN)
    quiet = {owner.pid for owner in report.processes if not owner.findings}
    assert full_queue.listener not in quiet
    assert full_queue.client not in quiet
    (queue_full,) = [f for f in about(report, full_queue.listener) if f.state is TcpState.LISTEN]
    assert count_text(queue_full) == f"{BACKLOG + 1} connections queued"
    # The queued connections are credited to the listener's process, marked as never accepted,
    # where ss shows them with no owner.
    (owner,) = [o for o in report.processes if o.pid == full_queue.listener]
    (established,) = [g for g in owner.groups if g.state is TcpState.ESTABLISHED]
    unowned = ss_count("established", f"sport = :{full_queue.port}", users=False)
    assert established.unaccepted == established.count == unowned == BACKLOG + 1


# --- 6: both ends of a half-closed connection on this host -----------------------------------

HALF_CLOSED = 6
ANY_HALF_CLOSE = Thresholds(close_wait_warning=1, fin_wait2_held_warning=1)


def test_both_ends_on_this_host_point_at_each_other(children: Children) -> None:
    peer, port_text = children.start(ACCEPTS_NEVER_CLOSES, HALF_CLOSED)
    port = int(port_text)
    holder, _ = children.start(HALF_CLOSES, port, HALF_CLOSED)
    wait_until(
        lambda: (
            ss_count("close-wait", f"sport = :{port}") == HALF_CLOSED
            and ss_count("fin-wait-2", f"dport = :{port}") == HALF_CLOSED
        ),
        "the half-closed connections",
    )
    report = analyse(collect_live("netlink"), thresholds=ANY_HALF_CLOSE)
    (fin_wait2,) = [f for f in about(report, holder) if f.code == FIN_WAIT2_HELD]
    assert fin_wait2.subject.pid == holder
    assert peer in fin_wait2.subject.pids
    # The peer that does not close is a process here: a local application to fix, not a
    # remote host to chase.
    assert fin_wait2.blame is Blame.LOCAL_APPLICATION
    assert not any("On the peer host" in step for step in fin_wait2.next_steps)
    assert any(f"pid={peer}," in step for step in fin_wait2.next_steps)
    assert str({e.name: e.value for e in fin_wait2.evidence}["local_peer"]).startswith(
        f"pid {peer}"
    )
    (close_wait,) = [
        f for f in about(report, peer) if f.state is TcpState.CLOSE_WAIT and f.subject.pid == peer
    ]
    assert close_wait.count == ss_count("close-wait", f"sport = :{port}", users=True)
    assert str({e.name: e.value for e in close_wait.evidence}["local_peer"]).startswith(
        f"pid {holder}"
    )


# --- 3: a closer that waits a known time --------------------------------------------------------

CLOSE_DELAY = 2.0  # seconds the server waits after the peer's FIN before close()
SLOW = Thresholds(close_wait_warning=3)


@pytest.fixture
def slow_closer(children: Children) -> Iterator[int]:
    server, port_text = children.start(SLOW_CLOSER, CLOSE_DELAY)
    port = int(port_text)
    stop = threading.Event()

    def clients() -> None:
        # Five connections a second, each closed at once; at most 400, at most 60 s.
        deadline = time.monotonic() + 60
        for _ in range(400):
            if stop.is_set() or time.monotonic() > deadline:
                return
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                pass
            time.sleep(0.2)

    thread = threading.Thread(target=clients, daemon=True)
    thread.start()
    try:
        # A full turnover: every CLOSE_WAIT seen now was made by the loop.
        wait_until(
            lambda: ss_count("close-wait", f"sport = :{port}") >= 5, "CLOSE_WAIT to build up"
        )
        time.sleep(CLOSE_DELAY)
        yield server
    finally:
        stop.set()
        thread.join(timeout=10)


def _slow(report: Report, server: int) -> Finding:
    (finding,) = [f for f in about(report, server) if f.state is TcpState.CLOSE_WAIT]
    return finding


def test_one_sample_of_a_slow_closer_does_not_call_it_a_leak(slow_closer: int) -> None:
    finding = _slow(analyse(collect_live("netlink"), thresholds=SLOW), slow_closer)
    assert finding.code == NOT_CLOSED
    assert "leak" not in finding.summary
    oldest = {e.name: e.value for e in finding.evidence}["oldest_at_least_s"]
    assert isinstance(oldest, float) and oldest <= CLOSE_DELAY + 1
    assert any("a leak or an application slow to close" in item for item in finding.unchecked)
    assert any("--samples" in item for item in finding.unchecked)


def test_two_samples_of_a_slow_closer_do_not_call_it_a_leak(slow_closer: int) -> None:
    diagnosed = report_of(Inputs(source="netlink"), thresholds=SLOW, samples=2, interval=1.0)
    finding = _slow(diagnosed.report, slow_closer)
    assert "leak, not a slow close" not in finding.summary
    assert finding.code in (NOT_CLOSED, SLOW_CLOSE)
    if finding.code == NOT_CLOSED:
        assert any("a leak or an application slow to close" in item for item in finding.unchecked)


def test_watch_never_reverses_its_verdict_on_a_slow_closer(slow_closer: int) -> None:
    samples = Inputs(source="netlink").live_samples(6, 1.0)
    codes: list[str] = []
    for look in follow(samples, thresholds=SLOW, window=5, count=6):
        finding = _slow(look.report, slow_closer)
        assert "leak, not a slow close" not in finding.summary, look.number
        codes.append(finding.code)
    # Once the window is longer than the delay, every early CLOSE_WAIT is seen closed, and
    # that is no longer left unchecked.
    assert codes[-1] == SLOW_CLOSE, codes
    assert not [item for item in finding.unchecked if "a leak or an application" in item]
    # "Cannot tell yet", then "slow close": never back.
    assert codes == sorted(codes, key=lambda code: code == SLOW_CLOSE), codes


def test_the_children_are_gone_after_a_scene() -> None:
    """Guard: a scene's children are stopped by pid (the fixture), none survives it."""
    scene = Children()
    pid, _ = scene.start(NEVER_ACCEPTS, 1)
    scene.stop()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
