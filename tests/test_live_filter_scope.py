"""A filter selects what it says, on trouble made for real on loopback.

One server process holds three listeners: A never accepts (its queue fills), B1 and B2 accept
connections and never close them, so the clients' shutdowns leave CLOSE_WAIT on both. The
listener finding is about port A only; the CLOSE_WAIT finding about the server covers B1 and
B2. ``--port``/``--pid``/``--state`` and their mixes must show a finding exactly when one of
its own sockets is selected (or, for ``--pid`` alone, when it is about that process), and the
counts of what lies outside the filter are those of the finding's own sockets, checked
against ``ss``. Every child is stopped by pid in the fixture's teardown.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tcphealth.diagnose.rules.listeners import LISTEN_QUEUE_FULL
from tcphealth.filters import SocketFilter
from tcphealth.model import Finding, Snapshot, TcpState
from tcphealth.pipeline import analyse
from tcphealth.sources import collect_live
from tests.test_live_verdict import Children, ss_count, wait_until

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

# Listener A (backlog 1, never accepts), B1 and B2 (accept N1 and N2, never close them). Prints the
# three ports, then "accepted" once B1 and B2 hold their connections; waits for stdin to close.
SERVER = """
import socket, sys
counts = int(sys.argv[1]), int(sys.argv[2])
def listener(backlog):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s
a, b1, b2 = listener(1), listener(64), listener(64)
print(*(s.getsockname()[1] for s in (a, b1, b2)), flush=True)
kept = [s.accept()[0] for s, count in zip((b1, b2), counts) for _ in range(count)]
print("accepted", flush=True)
sys.stdin.read()
"""

# Connects to A (non-blocking, kept), N1 times to B1 and N2 times to B2, closing those: the server's
# ends go to CLOSE_WAIT.
CLIENT = """
import socket, sys
a, b1, b2, n1, n2 = map(int, sys.argv[1:6])
kept = []
for _ in range(6):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", a))
    except BlockingIOError:
        pass
    kept.append(c)
for port, count in ((b1, n1), (b2, n2)):
    for _ in range(count):
        socket.create_connection(("127.0.0.1", port)).close()
print("ready", flush=True)
sys.stdin.read()
"""

ON_B1, ON_B2 = 7, 5  # 12 together: over the CLOSE_WAIT warning (10), each alone under it


@dataclasses.dataclass
class Scene:
    server: int
    client: int
    a: int
    b1: int
    b2: int
    snapshot: Snapshot


@pytest.fixture
def scene() -> Iterator[Scene]:
    children = Children()
    try:
        server, ports = children.start(SERVER, ON_B1, ON_B2)
        a, b1, b2 = map(int, ports.split())
        client, _ = children.start(CLIENT, a, b1, b2, ON_B1, ON_B2)
        wait_until(
            lambda: (
                ss_count("close-wait", f"sport = :{b1}") == ON_B1
                and ss_count("close-wait", f"sport = :{b2}") == ON_B2
            ),
            "the server's CLOSE_WAIT on both ports",
        )
        wait_until(lambda: _accept_queue(a) == 2, "listener A's queue to fill (backlog 1 + 1)")
        yield Scene(server, client, a, b1, b2, collect_live("netlink"))
    finally:
        children.stop()


def _accept_queue(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[1]) if out.strip() else -1


def _shown(scene: Scene, **criteria: object) -> dict[str, Finding]:
    """The findings about the scene's server that a filter shows, by code."""
    report = analyse(scene.snapshot, SocketFilter(**criteria))  # type: ignore[arg-type]
    return {f.code: f for f in report.findings if scene.server in f.subject.pids}


def _close_wait_code(shown: dict[str, Finding]) -> str:
    (code,) = [code for code, f in shown.items() if f.state is TcpState.CLOSE_WAIT]
    return code


def test_a_port_filter_leaves_out_the_same_process_s_trouble_on_another_port(
    scene: Scene,
) -> None:
    whole = _shown(scene)
    assert LISTEN_QUEUE_FULL in whole
    close_wait = _close_wait_code(whole)
    # On B1 only: the CLOSE_WAIT finding (some of its sockets are there), not A's full queue.
    on_b1 = _shown(scene, ports=frozenset({scene.b1}))
    assert set(on_b1) == {close_wait}
    # On A only: the full queue, not the CLOSE_WAIT that lies on B1 and B2.
    on_a = _shown(scene, ports=frozenset({scene.a}))
    assert set(on_a) == {LISTEN_QUEUE_FULL}
    assert on_a[LISTEN_QUEUE_FULL].outside_filter == ()


def test_what_lies_outside_the_filter_counts_the_finding_s_own_sockets(scene: Scene) -> None:
    whole = _shown(scene)
    finding = whole[_close_wait_code(whole)]
    on_b2 = ss_count("close-wait", f"sport = :{scene.b2}")
    on_both = on_b2 + ss_count("close-wait", f"sport = :{scene.b1}")
    assert finding.count == on_both
    shown = _shown(scene, ports=frozenset({scene.b1}))[finding.code]
    (note,) = shown.outside_filter
    # Of the CLOSE_WAIT it counts, B2's lie outside; the listeners and A's queue are not its.
    assert re.match(rf"{on_b2} of the {on_both} sockets it concerns lie outside", note), note
    assert dataclasses.replace(shown, outside_filter=()) == finding


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"port": "a"}, {LISTEN_QUEUE_FULL}),
        ({"port": "b1"}, {"close-wait"}),
        ({"state": TcpState.CLOSE_WAIT}, {"close-wait"}),
        ({"state": TcpState.LISTEN, "port": "b1"}, set()),
        ({"state": TcpState.ESTABLISHED}, {LISTEN_QUEUE_FULL}),  # its queued connections
        (None, {LISTEN_QUEUE_FULL, "close-wait"}),  # --pid alone: all about the process
    ],
)
def test_pid_with_a_port_or_a_state_selects_the_sockets_they_name(
    scene: Scene, criteria: dict[str, object] | None, expected: set[str]
) -> None:
    options: dict[str, object] = {"pids": frozenset({scene.server})}
    for key, value in (criteria or {}).items():
        if key == "port":
            options["ports"] = frozenset({getattr(scene, str(value))})
        else:
            options["states"] = frozenset({value})
    shown = _shown(scene, **options)
    codes = {"close-wait" if f.state is TcpState.CLOSE_WAIT else code for code, f in shown.items()}
    assert codes == expected


def test_a_listener_finding_counts_only_the_sockets_on_its_listener(scene: Scene) -> None:
    # Under --state ESTABLISHED the full queue shows (its queued connections are ESTABLISHED);
    # what lies outside is the rest of port A -- not the server's listeners and CLOSE_WAIT on
    # B1 and B2, which the finding is not about.
    shown = _shown(scene, states=frozenset({TcpState.ESTABLISHED}))[LISTEN_QUEUE_FULL]
    on_a = f"( sport = :{scene.a} or dport = :{scene.a} )"
    total = ss_count("all", on_a)
    established = ss_count("established", on_a)
    (note,) = shown.outside_filter
    assert note.startswith(f"{total - established} of the {total} sockets it concerns"), note
