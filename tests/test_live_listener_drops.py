"""A listener's own drop count, made for real on loopback and compared with ``ss -m``.

On a LISTEN socket the kernel's sk_drops (skmem ``d``) counts the handshakes that listener
dropped because its accept queue was full. tcphealth shows it on the accept-queue finding and
does not read it as data dropped for a full receive buffer.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Evidence, Snapshot, TcpState
from tcphealth.sources import collect_live

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")

CLIENTS = 8  # bounded: a backlog of 1 holds 2, the rest retransmit SYNs toward it
DEADLINE_S = 15.0


def ss_listener_drops(port: int) -> int:
    out = subprocess.run(
        ["ss", "-tlnmH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"skmem:\([^)]*\bd(\d+)\)", out)
    assert found, out
    return int(found.group(1))


@pytest.fixture
def full_listener() -> Iterator[int]:
    server = socket.socket()
    clients: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # never accepts
        port = server.getsockname()[1]
        for _ in range(CLIENTS):
            client = socket.socket()
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        deadline = time.monotonic() + DEADLINE_S
        while ss_listener_drops(port) == 0:
            assert time.monotonic() < deadline, "the listener dropped no handshake in time"
            time.sleep(0.2)
        yield port
    finally:
        for client in clients:
            client.close()
        server.close()


def _listener(snapshot: Snapshot, port: int) -> int:
    (listener,) = [
        s for s in snapshot.sockets if s.state is TcpState.LISTEN and s.local.port == port
    ]
    assert listener.drops is not None
    return listener.drops


def _evidence(evidence: tuple[Evidence, ...]) -> dict[str, object]:
    return {item.name: item.value for item in evidence}


def test_a_full_listeners_drops_are_its_dropped_handshakes(full_listener: int) -> None:
    port = full_listener
    before = ss_listener_drops(port)
    snapshot = collect_live("netlink")
    after = ss_listener_drops(port)
    drops = _listener(snapshot, port)
    assert before <= drops <= after  # the count only grows; ss read on both sides of our look
    findings = [f for f in diagnose(snapshot) if f.subject.address is not None]
    (queue,) = [
        f
        for f in findings
        if f.code == "listen-queue-full" and f.subject.address.port == port  # type: ignore[union-attr]
    ]
    assert _evidence(queue.evidence)["handshakes_dropped"] == drops
    # receive-drops names the socket with the most drops in its evidence; never this listener.
    details = [
        item.detail or ""
        for f in diagnose(snapshot)
        if f.code == "receive-drops"
        for item in f.evidence
    ]
    assert not [d for d in details if f"127.0.0.1:{port} <-" in d], details


def test_the_json_socket_record_carries_the_listeners_drops(full_listener: int) -> None:
    port = full_listener
    before = ss_listener_drops(port)
    out = subprocess.run(
        [sys.executable, "-m", "tcphealth", "sockets", "--format", "json", "--port", str(port)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = ss_listener_drops(port)
    (record,) = [s for s in json.loads(out)["sockets"] if s["state"] == "LISTEN"]
    assert before <= record["drops"] <= after
    assert record["shutdown"] == 0  # a listener shuts neither side
