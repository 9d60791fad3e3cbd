"""peer-path-losing with the kernel as the oracle: in a network namespace of our own, what a
server sends one client address (127.0.0.5) is dropped by nftables, as a lossy path would. One
connection from it is closed by the client first, so the server's FIN resends in LAST_ACK; two
more connect, and the server's SYN-ACKs resend in SYN_RECV. One look over netlink must find the
path to 127.0.0.5 losing packets, with the same sockets ``ss -o`` shows resending.

The drop is on the way in, after the segment left: dropped in the sender's own output hook, a
send fails locally and the kernel does not count it as a resend (SYN_RECV stays at 0), which is
no lossy path at all.

The child lives under ``timeout`` and is killed by its handle; the namespace is deleted,
whatever happens. Needs root, ip (iproute2), ss and nft."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Severity, TcpState
from tests.live_netns import Namespace, hear, lab_marks, namespaces, say, until

pytestmark = lab_marks("ip", "ss", "nft")

PORT = 8443
PEER = "127.0.0.5"

_SERVER = f"""
import json, os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", {PORT}))
server.listen(16)
client = socket.socket()
client.bind(("{PEER}", 0))
client.connect(("127.0.0.1", {PORT}))
accepted, _ = server.accept()
client.close()  # the client closes first: the server's end is in CLOSE_WAIT
print(json.dumps({{"pid": os.getpid()}}), flush=True)
sys.stdin.readline()  # the test drops what the server sends the client
accepted.close()  # LAST_ACK: its FIN is lost
held = []
for _ in range(2):
    s = socket.socket()
    s.setblocking(False)
    s.bind(("{PEER}", 0))
    s.connect_ex(("127.0.0.1", {PORT}))  # SYN_RECV on the server: its SYN-ACK is lost
    held.append(s)
print(json.dumps({{"connects": len(held)}}), flush=True)
sys.stdin.readline()
"""

_DROP_TO_PEER = f"""
table inet thlabloss {{
  chain input {{
    type filter hook input priority 0
    ip saddr 127.0.0.1 ip daddr {PEER} tcp sport {PORT} drop
  }}
}}
"""

_RESENDS = re.compile(r"timer:\(on,[^,]+,(\d+)\)")


@pytest.fixture
def netns() -> Iterator[Callable[[str], Namespace]]:
    yield from namespaces()


def _resending(ns: Namespace, state: str) -> list[str]:
    """ss's rows in ``state`` toward the peer whose segments were resent at least once."""
    return [
        row
        for row in ns.run("ss", "-Htno", "state", state, "dst", PEER).splitlines()
        if (found := _RESENDS.search(row)) is not None and int(found.group(1)) >= 1
    ]


def _lossy(ns: Namespace) -> None:
    """The scene: the client's close acknowledged (its end in FIN_WAIT2) before the drop, so
    that only the server's segments are lost; then the server's close and two connects."""
    child = ns.start(_SERVER)
    hear(child)
    until(lambda: len(ns.ss("state", "fin-wait-2")) == 1)
    ns.nft(_DROP_TO_PEER)
    say(child)
    assert hear(child)["connects"] == 2


def test_a_peer_whose_handshake_and_close_segments_are_lost_is_a_lossy_path(
    netns: Callable[[str], Namespace],
) -> None:
    ns = netns("loss")
    _lossy(ns)
    until(lambda: len(_resending(ns, "last-ack")) == 1 and len(_resending(ns, "syn-recv")) == 2)

    findings = [f for f in diagnose(ns.look()) if f.code == "peer-path-losing"]

    (found,) = findings
    assert (found.severity, found.state, found.blame, found.count) == (
        Severity.WARNING,
        TcpState.SYN_RECV,  # the commonest resending state in this look
        Blame.NETWORK,
        3,
    )
    assert found.subject.endpoint == PEER
    evidence = {e.name: e.value for e in found.evidence}
    # The same sockets ss shows resending (taken again: resends only grow).
    assert (evidence["syn_recv"], evidence["last_ack"]) == (
        len(_resending(ns, "syn-recv")),
        len(_resending(ns, "last-ack")),
    )


def test_handshake_resends_alone_toward_a_peer_are_no_lossy_path(
    netns: Callable[[str], Namespace],
) -> None:
    """The client's own SYN_SENT toward the server resend too, but only in the handshake: a
    peer that never answered is not shown to be there, so no path is blamed for it."""
    ns = netns("loss")
    _lossy(ns)
    until(lambda: len(ns.ss("state", "syn-sent")) == 2 and len(_resending(ns, "syn-recv")) == 2)
    until(
        lambda: (
            sum(
                1
                for row in ns.run("ss", "-Htno", "state", "syn-sent").splitlines()
                if (m := _RESENDS.search(row)) is not None and int(m.group(1)) >= 1
            )
            == 2
        )
    )
    endpoints = {f.subject.endpoint for f in diagnose(ns.look()) if f.code == "peer-path-losing"}
    assert endpoints == {PEER}  # 127.0.0.1, the server the SYN_SENT go to, is not claimed
