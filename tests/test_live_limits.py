"""The limits around the states (issue #25), with the kernel as the oracle, in namespaces of our
own: a SYN queue that overflows into cookies (or drops), SO_REUSEPORT listeners with uneven
queues, an ephemeral port range used up by ESTABLISHED connections until connect() fails with
EADDRNOTAVAIL, a connection whose data goes unanswered until the kernel's ETIMEDOUT, and a
client whose new connection lands on the 4-tuple of a CLOSE_WAIT the server never closed.

Each case runs a child inside a fresh network namespace (its own sysctls, counters and
nftables), talks to it line by line over a pipe, looks into the namespace with tcphealth and
with ss, and compares what tcphealth says with what the kernel then does. Every child has a
time limit of its own and is killed and waited for, and every namespace deleted, whatever
happens.

Needs root, ip (iproute2), ss and nft; skipped with the reason otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.model import Finding, Severity, Snapshot, TcpState, TimerKind
from tcphealth.states import syn_queue_capacity
from tests.live_netns import (
    CHILD_LIMIT,
    Namespace,
    drop_final_acks,
    half_open_script,
    hear,
    lab_marks,
    namespaces,
    run,
    say,
)

pytestmark = lab_marks("ip", "ss", "nft")


@pytest.fixture
def netns() -> Iterator[Callable[[str], Namespace]]:
    yield from namespaces()


def codes(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


def evidence(finding: Finding) -> dict[str, Any]:
    return {item.name: item.value for item in finding.evidence}


# --- the SYN queue ------------------------------------------------------------------------------

# A listener (backlog 8) that never accepts, 30 connects to it, and the final ACK of every
# handshake toward it dropped: the handshakes stay half open, as in a SYN flood.
SYN_FLOOD = half_open_script("127.0.0.1", 5555, backlog=8, connects=30)
DROP_FINAL_ACKS = drop_final_acks("thlab", 5555)


@pytest.mark.parametrize("cookies", [1, 0])
def test_a_full_syn_queue_is_named_with_what_the_kernel_does_next(netns: Any, cookies: int) -> None:
    ns = netns("synq")
    ns.sysctl(**{"net.ipv4.tcp_syncookies": cookies, "net.ipv4.tcp_max_syn_backlog": 8})
    ns.nft(DROP_FINAL_ACKS)
    child = ns.start(SYN_FLOOD)
    assert hear(child) == {"connects": 30}
    snapshot = ns.look()
    half_open = len(ns.ss("state", "syn-recv"))

    # The kernel keeps what the model says (listen(8): 9 with cookies, 7 without them and
    # tcp_max_syn_backlog 8), and tcphealth sees the same sockets.
    assert half_open == syn_queue_capacity(8, cookies, 8) == (9 if cookies else 7)
    assert sum(1 for s in snapshot.sockets if s.state is TcpState.SYN_RECV) == half_open
    assert snapshot.sysctls.tcp_max_syn_backlog == 8
    (finding,) = codes(diagnose(snapshot), "syn-queue-full")
    assert finding.count == half_open
    assert finding.subject.address is not None and finding.subject.address.port == 5555
    assert evidence(finding)["syn_queue_capacity"] == half_open
    # The namespace's own counters: every SYN past the queue got a cookie, or was dropped.
    if cookies:
        assert finding.severity is Severity.WARNING
        assert snapshot.counters["TcpExt.TCPReqQFullDoCookies"] == 30 - half_open
        assert evidence(finding)["TCPReqQFullDoCookies"] == 30 - half_open
        assert "answered with SYN cookies" in finding.summary
    else:
        assert finding.severity is Severity.CRITICAL
        # Dropped below the full queue, at 3/4 of tcp_max_syn_backlog: the kernel counts
        # those in ListenDrops only (TCPReqQFullDrop is for a queue at its backlog).
        assert snapshot.counters["TcpExt.ListenDrops"] >= 30 - half_open
        assert evidence(finding)["ListenDrops"] == snapshot.counters["TcpExt.ListenDrops"]
        assert snapshot.counters.get("TcpExt.TCPReqQFullDoCookies", 0) == 0
        assert "SYNs are dropped" in finding.summary
    # The handshake rule does not say it a second time.
    assert not codes(diagnose(snapshot), "syn-recv-no-final-ack")
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- SO_REUSEPORT -------------------------------------------------------------------------------

REUSEPORT = """
import json, socket, sys, threading
def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 7000)); s.listen(4)
    return s
busy, idle = listener(), listener()
taken = []
def accept_all():
    while True:
        taken.append(idle.accept()[0])
threading.Thread(target=accept_all, daemon=True).start()
clients = []
for _ in range(40):
    c = socket.socket(); c.settimeout(0.2)
    try:
        c.connect(("127.0.0.1", 7000))
    except OSError:
        pass
    clients.append(c)
print(json.dumps({"busy": busy.fileno(), "accepted": len(taken)}), flush=True)
sys.stdin.readline()
"""


def test_reuseport_listeners_with_uneven_queues(netns: Any) -> None:
    ns = netns("reuse")
    child = ns.start(REUSEPORT)
    answer = hear(child)
    assert answer["accepted"] > 0  # the kernel gave the accepting listener its share
    snapshot = ns.look()
    rows = ns.ss("-l", "sport = :7000")
    queues = sorted(int(row.split()[1]) for row in rows)
    # One listener's queue is full (backlog 4 holds 5), the other's (nearly) empty -- its
    # worker may not have taken the last connection yet: what ss shows.
    assert len(queues) == 2 and queues[1] == 5 and queues[0] <= 1, rows
    (finding,) = codes(diagnose(snapshot), "reuseport-uneven")
    assert finding.severity is Severity.WARNING
    assert finding.count == 5
    seen = sorted(int(str(e.value)) for e in finding.evidence if e.name == "accept_queue")
    assert seen[1] == 5 and seen[0] in (0, 1), seen
    assert evidence(finding)["listeners_keeping_up"] == 1
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- ephemeral ports ----------------------------------------------------------------------------

PORTS = """
import json, socket, sys, threading
server = socket.socket(); server.bind(("127.0.0.1", 5000)); server.listen(64)
held = []
def accept_all():
    while True:
        held.append(server.accept()[0])
threading.Thread(target=accept_all, daemon=True).start()
clients = []
def connect():
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", 5000))
    except OSError as failure:
        c.close()
        return failure.errno
    clients.append(c)
    return 0
for want in (8, 9, 10):
    errors = [connect() for _ in range(want - len(clients))]
    print(json.dumps({"connected": len(clients), "errors": errors}), flush=True)
    sys.stdin.readline()
"""


def test_ephemeral_ports_used_up_by_established_until_eaddrnotavail(netns: Any) -> None:
    ns = netns("ports")
    # Ten ports, one of them reserved: nine connections to one destination, then no more.
    ns.sysctl(
        **{
            "net.ipv4.ip_local_port_range": "40000 40009",
            "net.ipv4.ip_local_reserved_ports": "40005",
        }
    )
    child = ns.start(PORTS)
    assert hear(child) == {"connected": 8, "errors": [0] * 8}
    snapshot = ns.look()
    assert snapshot.sysctls.ip_local_reserved_ports == ((40005, 40005),)
    (finding,) = codes(diagnose(snapshot), "ephemeral-ports-exhausting")
    assert finding.severity is Severity.WARNING
    assert (finding.count, evidence(finding)["ports_usable"]) == (8, 9)
    assert "1 port is left; the connect() after 1 more fails with EADDRNOTAVAIL" in (
        finding.summary
    )

    say(child)  # the ninth: tcphealth said one was left
    assert hear(child) == {"connected": 9, "errors": [0]}
    snapshot = ns.look()
    client_rows = [row for row in ns.ss("state", "established", "dport = :5000")]
    assert len(client_rows) == 9
    (finding,) = codes(diagnose(snapshot), "ephemeral-ports-exhausting")
    assert finding.severity is Severity.CRITICAL
    assert finding.count == 9
    assert "the next connect() from 127.0.0.1 to 127.0.0.1:5000 fails with EADDRNOTAVAIL" in (
        finding.summary
    )

    say(child)  # the tenth: the kernel agrees
    assert hear(child) == {"connected": 9, "errors": [99]}  # EADDRNOTAVAIL
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- a connection whose data goes unanswered ----------------------------------------------------

STALLED = """
import json, socket, sys, time
server = socket.socket(); server.bind(("127.0.0.1", 6000)); server.listen(1)
client = socket.create_connection(("127.0.0.1", 6000))
peer, _ = server.accept()
print(json.dumps({"connected": True}), flush=True)
sys.stdin.readline()  # the namespace now drops everything sent to port 6000
client.settimeout(30)
client.sendall(b"x" * 1000)
print(json.dumps({"sent": True}), flush=True)
try:
    client.recv(1)
    error = None
except OSError as failure:
    error = failure.errno
print(json.dumps({"errno": error, "ended_at": time.monotonic()}), flush=True)
sys.stdin.readline()
"""

DROP_TO_PEER = """
table inet thlab {
  chain input {
    type filter hook input priority 0
    tcp dport 6000 drop
  }
}
"""


def test_unanswered_data_ends_when_tcphealth_predicts(netns: Any) -> None:
    ns = netns("stall")
    ns.sysctl(**{"net.ipv4.tcp_retries2": 4})  # gives up after about 6.2 s
    child = ns.start(STALLED)
    assert hear(child) == {"connected": True}
    ns.nft(DROP_TO_PEER)
    say(child)
    assert hear(child) == {"sent": True}
    # Look until the connection counts as stalled (3 timeouts: about 1.4 s in), at most 5 s.
    finding = None
    deadline = time.monotonic() + 5
    while finding is None and time.monotonic() < deadline:
        before = time.monotonic()
        snapshot = ns.look()
        after = time.monotonic()
        found = codes(diagnose(snapshot), "established-peer-unreachable")
        if found:
            finding = found[0]
        else:
            time.sleep(0.1)
    assert finding is not None, "the connection never showed as stalled"
    assert snapshot.sysctls.tcp_retries2 == 4
    left = evidence(finding)["ends_in_s"]
    assert "unless an ACK arrives (ETIMEDOUT)" in finding.summary
    ended = hear(child)
    assert ended["errno"] == 110  # ETIMEDOUT: the kernel gave up
    # The kernel ends it when tcphealth said, give or take the look itself and the timer's
    # granularity (and the child's waking on a busy machine); a schedule off by one timeout
    # would miss by 1.6 s or more.
    assert before + left - 0.3 <= ended["ended_at"] <= after + left + 0.8, (left, ended)
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- tcp_abort_on_overflow ----------------------------------------------------------------------

# Two clients, from ports 30001 and 30002, whose final ACKs the namespace drops: they wait half
# open while two more connections fill the accept queue (listen(1) holds 2). Then the ACKs may
# pass, and arrive -- with the SYN-ACK the listener resends -- at a full queue.
OVERFLOW = """
import json, socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 5600)); listener.listen(1)
late = []
for port in (30001, 30002):
    c = socket.socket(); c.bind(("127.0.0.1", port))
    c.connect(("127.0.0.1", 5600))  # the client's side of the handshake completes
    late.append(c)
fillers = [socket.create_connection(("127.0.0.1", 5600)) for _ in range(2)]
print(json.dumps({"connected": len(late) + len(fillers)}), flush=True)
sys.stdin.readline()  # the final ACKs pass again
outcomes = []
for c in late:
    c.settimeout(4)
    try:
        outcomes.append("data" if c.recv(1) else "closed")
    except socket.timeout:
        outcomes.append("timeout")
    except OSError as failure:
        outcomes.append(failure.errno)
print(json.dumps({"outcomes": outcomes}), flush=True)
sys.stdin.readline()
"""

DROP_LATE_ACKS = """
table inet thlab {
  chain input {
    type filter hook input priority 0
    tcp dport 5600 tcp sport { 30001, 30002 } tcp flags & (syn | ack) == ack drop
  }
}
"""


@pytest.mark.parametrize("abort", [0, 1])
def test_abort_on_overflow_decides_what_clients_of_a_full_queue_see(netns: Any, abort: int) -> None:
    ns = netns("abort")
    ns.sysctl(**{"net.ipv4.tcp_abort_on_overflow": abort})
    ns.nft(DROP_LATE_ACKS)
    child = ns.start(OVERFLOW)
    # connect() succeeds for all four: a client's handshake ends with the SYN-ACK.
    assert hear(child) == {"connected": 4}
    snapshot = ns.look()
    (finding,) = codes(diagnose(snapshot), "listen-queue-full")
    assert finding.count == 2
    told = {item.name: item for item in finding.evidence}
    assert told["tcp_abort_on_overflow"].value == abort
    assert told["syn_recv"].value == 2  # the two late clients, waiting behind the full queue
    run("ip", "netns", "exec", ns.name, "nft", "flush", "ruleset")
    say(child)
    outcomes = hear(child)["outcomes"]
    if abort:
        # tcphealth said clients get a reset; the kernel sends one (ECONNRESET).
        assert "clients get a reset" in (told["tcp_abort_on_overflow"].detail or "")
        assert outcomes == [104, 104]
    else:
        # tcphealth said their ACK is dropped silently; the clients hear nothing.
        assert "dropped silently" in (told["tcp_abort_on_overflow"].detail or "")
        assert outcomes == ["timeout", "timeout"]
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- idle connections: keepalive, or nothing --------------------------------------------------

IDLE = """
import json, socket, sys, time
server = socket.socket(); server.bind(("127.0.0.1", 6100)); server.listen(4)
kept = socket.socket(); kept.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
kept.connect(("127.0.0.1", 6100))
bare = socket.create_connection(("127.0.0.1", 6100))
peers = [server.accept()[0] for _ in range(2)]
print(json.dumps({"connected": True}), flush=True)
sys.stdin.readline()  # the namespace now drops everything sent to port 6100
kept.settimeout(30)
try:
    kept.recv(1)
    error = None
except OSError as failure:
    error = failure.errno
print(json.dumps({"errno": error, "ended_at": time.monotonic()}), flush=True)
sys.stdin.readline()
"""

DROP_TO_IDLE_PEER = DROP_TO_PEER.replace("6000", "6100")


def test_keepalive_ends_an_idle_connection_when_predicted_and_nothing_ends_the_other(
    netns: Any,
) -> None:
    ns = netns("idle")
    # Keepalive after 2 s idle, then 2 probes 1 s apart: the end 4 s after the last packet.
    ns.sysctl(
        **{
            "net.ipv4.tcp_keepalive_time": 2,
            "net.ipv4.tcp_keepalive_intvl": 1,
            "net.ipv4.tcp_keepalive_probes": 2,
        }
    )
    child = ns.start(IDLE)
    assert hear(child) == {"connected": True}
    ns.nft(DROP_TO_IDLE_PEER)
    say(child)
    # Look until the kept connection has a probe unanswered (from 2 s in), at most 5 s.
    thresholds = Thresholds(established_idle_seconds=1)
    unanswered = None
    deadline = time.monotonic() + 5
    while unanswered is None and time.monotonic() < deadline:
        before = time.monotonic()
        snapshot = ns.look()
        after = time.monotonic()
        findings = diagnose(snapshot, thresholds)
        found = codes(findings, "established-keepalive-unanswered")
        if found:
            unanswered = found[0]
        else:
            time.sleep(0.1)
    assert unanswered is not None, "no keepalive probe went unanswered"
    assert unanswered.count == 1
    left = evidence(unanswered)["ends_in_s"]
    # The other client and the two server sides have no keepalive: idle, and nothing will end
    # them (ss shows no timer on them either).
    (idle,) = codes(findings, "established-idle-no-keepalive")
    assert idle.count == 3
    assert len(ns.ss("state", "established")) == 4
    no_timer = [row for row in ns.ss("-o", "state", "established") if "timer:" not in row]
    assert len(no_timer) == 3
    ended = hear(child)
    assert ended["errno"] == 110  # ETIMEDOUT: keepalive gave up
    assert before + left - 0.3 <= ended["ended_at"] <= after + left + 0.8, (left, ended)
    # The connection without keepalive is still there after the other's end.
    assert len(ns.ss("state", "established", "sport = :6100")) == 2
    assert len(ns.ss("state", "established", "dport = :6100")) == 1
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- where a sender's time went (tcp_info's busy, rwnd-limited and sndbuf-limited time) ---------

# A receiver with a tiny receive buffer that never reads, and a sender that fills what the
# window lets through and then keeps trying for half a second: the window closes, the sender's
# data waits on it (rwnd-limited), and the persist timer probes the zero window.
WINDOW_CLOSED = """
import json, socket, sys, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
listener.bind(("127.0.0.1", 5700)); listener.listen(1)
sender = socket.create_connection(("127.0.0.1", 5700))
receiver, _ = listener.accept()
sender.setblocking(False)
end = time.monotonic() + 0.5
while time.monotonic() < end:
    try:
        sender.send(b"x" * 65536)
    except BlockingIOError:
        time.sleep(0.01)
print(json.dumps({"port": sender.getsockname()[1]}), flush=True)
sys.stdin.readline()
"""


def _ss_times(line: str) -> dict[str, int]:
    """ss -ti's busy / rwnd_limited / sndbuf_limited, in ms; ss leaves out a time of 0."""
    times: dict[str, int] = {}
    for word in line.split():
        name, _, value = word.partition(":")
        if name in ("busy", "rwnd_limited", "sndbuf_limited"):
            times[name] = int(value.split("ms")[0])
    return times


def test_a_sender_held_back_by_the_peer_s_window_is_rwnd_limited_as_ss_says(netns: Any) -> None:
    ns = netns("rwnd")
    child = ns.start(WINDOW_CLOSED)
    port = hear(child)["port"]

    def sender_info(snapshot: Snapshot) -> Any:
        (sock,) = [s for s in snapshot.sockets if s.local.port == port]
        assert sock.tcp_info is not None
        return sock.tcp_info

    first = ns.look()
    lines = ns.ss("-i", "src", f"127.0.0.1:{port}")
    last = ns.look()
    before, after = sender_info(first), sender_info(last)
    assert len(lines) == 2, lines  # the socket's line, then its tcp_info line
    shown = _ss_times(lines[1])
    # The kernel's times only grow, and ss prints whole ms: read between our two looks, each
    # of its numbers lies between ours.
    for name, ours in (("busy", "busy_time_us"), ("rwnd_limited", "rwnd_limited_us")):
        assert getattr(before, ours) // 1000 <= shown[name] <= getattr(after, ours) // 1000
    # Held back by the window nearly all the time, never by its own send buffer.
    assert after.rwnd_limited_us >= 0.5 * after.busy_time_us > 0
    assert after.sndbuf_limited_us == 0 and "sndbuf_limited" not in shown

    (sock,) = [s for s in last.sockets if s.local.port == port]
    assert sock.timer is TimerKind.ZERO_WINDOW_PROBE
    findings = diagnose(last, Thresholds(established_warning=1, established_critical=5))
    (finding,) = codes(findings, "established-peer-not-reading")
    share = float(evidence(finding)["rwnd_limited"].rstrip("%"))
    assert share == pytest.approx(100 * after.rwnd_limited_us / after.busy_time_us, abs=0.06)
    assert evidence(finding)["sndbuf_limited"] == "0.0%"
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- segments dropped on arrival (skmem's drops against ss -tm) --------------------------------

# A receiver with a 2 KB receive buffer that never reads; the sender pushes for half a second.
# What arrives beyond the closed window is dropped and counted on the receiving socket only.
RECEIVER_FULL = """
import json, socket, sys, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
listener.bind(("127.0.0.1", 5800)); listener.listen(1)
sender = socket.create_connection(("127.0.0.1", 5800))
receiver, _ = listener.accept()
sender.setblocking(False)
end = time.monotonic() + 0.5
while time.monotonic() < end:
    try:
        sender.send(b"x" * 65536)
    except BlockingIOError:
        time.sleep(0.01)
print(json.dumps({"port": sender.getsockname()[1]}), flush=True)
sys.stdin.readline()
"""


def _ss_drops(lines: list[str]) -> dict[int, int]:
    """Each socket's local port -> skmem's d, from ss -Htnm (a socket line, then its skmem)."""
    drops: dict[int, int] = {}
    for head, skmem in zip(lines[::2], lines[1::2], strict=True):
        port = int(head.split()[3].rsplit(":", 1)[1])
        inner = skmem.strip().removeprefix("skmem:(").removesuffix(")")
        fields = dict((item[:1], item) for item in inner.split(",") if item.startswith("d"))
        drops[port] = int(fields["d"][1:])
    return drops


def test_drops_on_a_full_receiver_are_counted_as_ss_shows_them(netns: Any) -> None:
    ns = netns("drops")
    child = ns.start(RECEIVER_FULL)
    port = hear(child)["port"]
    first = ns.look()
    shown = _ss_drops(ns.ss("-m"))
    last = ns.look()
    assert shown.keys() == {port, 5800}, shown

    def drops(snapshot: Snapshot, local_port: int) -> int:
        (sock,) = [
            s
            for s in snapshot.sockets
            if s.local.port == local_port and s.state is TcpState.ESTABLISHED
        ]
        assert sock.drops is not None
        return sock.drops

    # The count only grows: ss, read between our two looks, lies between them, per socket.
    for local_port in (port, 5800):
        assert drops(first, local_port) <= shown[local_port] <= drops(last, local_port)
    assert drops(last, 5800) > 0 and drops(last, port) == 0
    # The namespace's counters stay 0 for these (beyond-the-window) drops.
    assert last.counters["TcpExt.TCPRcvQDrop"] == 0
    assert last.counters["TcpExt.TCPBacklogDrop"] == 0
    (finding,) = codes(diagnose(last), "receive-drops")
    assert finding.count == 1
    assert evidence(finding)["drops"] == drops(last, 5800)
    assert evidence(finding)["TCPRcvQDrop"] == 0
    say(child)
    child.wait(timeout=CHILD_LIMIT)


# --- CLOSE_WAIT in a client's way ---------------------------------------------------------------

HELD_CLOSE_WAIT = """
import json, select, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 5900))
listener.listen(512)
held, ports = [], []
for _ in range(COUNT):
    client = socket.create_connection(("127.0.0.1", 5900))
    server, _ = listener.accept()
    held.append(server)  # the server never closes: CLOSE_WAIT once the client has
    ports.append(client.getsockname()[1])
    client.close()
print(json.dumps({"ports": ports}), flush=True)
# The client comes back from a port it used, as its port allocator may: the test says which.
port = int(sys.stdin.readline())
client = socket.socket()
client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
client.bind(("127.0.0.1", port))
client.setblocking(False)
client.connect_ex(("127.0.0.1", 5900))
print(json.dumps({"port": port}), flush=True)
sys.stdin.readline()
select.select([], [client], [], 20)
print(json.dumps({"error": client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)}), flush=True)
sys.stdin.readline()
"""


LOSE_CHALLENGE_ACK = """
table inet collide {
  chain output {
    type filter hook output priority 0
    tcp sport 5900 tcp dport PORT drop
  }
}
"""


def _wait_for(check: Any, seconds: float) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass (a bound, not a measure)."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def test_close_wait_on_a_client_s_ports_collides_as_the_rule_says(netns: Any) -> None:
    count = 300  # just over 1% of the default range 32768-60999: the rule's warning
    ns = netns("collide")
    ns.sysctl(**{"net.ipv4.tcp_fin_timeout": 1})  # the client forgets its ports quickly
    child = ns.start(HELD_CLOSE_WAIT.replace("COUNT", str(count)))
    ports: list[int] = hear(child)["ports"]
    assert len(set(ports)) == count and all(32768 <= port <= 60999 for port in ports)
    shown = ns.ss("state", "close-wait", "( sport = :5900 )")
    assert len(shown) == count
    before = ns.look()
    (risk,) = codes(diagnose(before), "close-wait-collision-risk")
    assert risk.severity is Severity.WARNING
    assert evidence(risk)["close_wait"] == len(shown)
    assert evidence(risk)["connections_until_likely"] == 65  # 1 - (1 - 300/28232)^65 >= 1/2
    assert str(risk.subject.address.address) == "127.0.0.1"  # type: ignore[union-attr]
    challenges = before.counters["TcpExt.TCPChallengeACK"]
    assert evidence(risk)["TCPChallengeACK"] == challenges
    # Once the client's side is gone, only this host still holds the 4-tuple.
    assert _wait_for(lambda: not ns.ss("state", "fin-wait-2", "state", "time-wait"), 10)

    def stale_ports() -> list[int]:
        rows = ns.ss("state", "close-wait", "( sport = :5900 )")
        return [int(row.split()[-1].rsplit(":", 1)[1]) for row in rows]

    # A stale socket may already be gone by now (seen: 299 of 300 in one run of ten), most
    # likely reset by a client end that stayed a full FIN_WAIT2 socket (its FIN acknowledged
    # while close() still held it) and whose 1 s fin timeout ended it with a reset, not
    # silently. So the stale sockets are counted again here, and the client comes back from
    # a port one of them still holds.
    stale = stale_ports()
    assert count - 5 <= len(stale) <= count
    target = ports[0] if ports[0] in stale else stale[0]
    # A firewall that loses the challenge ACK: the client's SYN meets the stale CLOSE_WAIT
    # and nothing answers it.
    ns.nft(LOSE_CHALLENGE_ACK.replace("PORT", str(target)))
    say(child, str(target))
    port = hear(child)["port"]
    assert port == target
    assert _wait_for(lambda: ns.look().counters["TcpExt.TCPChallengeACK"] > challenges, 10), (
        "no challenge ACK"
    )
    during = ns.look()
    assert f"127.0.0.1:{port} 127.0.0.1:5900" in " ".join(
        " ".join(line.split()) for line in ns.ss("state", "syn-sent")
    )
    (collision,) = codes(diagnose(during), "close-wait-collision")
    assert evidence(collision)["opening"] == f"SYN_SENT 127.0.0.1:{port} -> 127.0.0.1:5900"
    assert evidence(collision)["TCPChallengeACK"] == during.counters["TcpExt.TCPChallengeACK"]
    assert evidence(collision)["TCPChallengeACK"] > challenges
    # Without the firewall the challenge ACK gets through, the client's RST clears the stale
    # socket and its next SYN connects, as the finding says.
    run("ip", "netns", "exec", ns.name, "nft", "delete", "table", "inet", "collide")
    say(child)
    assert hear(child)["error"] == 0
    after = ns.look()
    assert not codes(diagnose(after), "close-wait-collision")

    # One stale socket is gone. A dump taken while the kernel still inserts the new connection
    # can pass over a row (its hash chain moved under the walk), so a short count is asked
    # again; a socket really lost stays lost and fails this after the bound.
    def remaining() -> int:
        return len(ns.ss("state", "close-wait", "( sport = :5900 )"))

    assert _wait_for(lambda: remaining() == len(stale) - 1, 5), (remaining(), len(stale))
    say(child)
    child.wait(timeout=CHILD_LIMIT)
