"""CLOSE_WAIT holding data nobody read, made for real on loopback and checked against ``ss``
(issue 22): a server that accepts and never reads; its clients each send a short request and
close. The server's sockets sit in CLOSE_WAIT with the request and the FIN in their receive
queue. Fewer than close_wait_warning, they are still a warning from one look -- read live over
netlink (the holder named) and read from an ``ss -tan`` paste of the same moment (no owner) --
and a few CLOSE_WAIT with the FIN alone are not.

The scenes are child processes stopped by pid (tests/test_live_verdict.py's Children), also
when a test fails; nothing leaves loopback, and every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose.rules.close_wait import OWNER_UNKNOWN, UNREAD_DATA
from tcphealth.model import Blame, Severity, TcpState
from tcphealth.pipeline import analyse
from tcphealth.sources import collect_live
from tests.test_live_verdict import ACCEPTS_NEVER_CLOSES, Children, children, wait_until

__all__ = ["children"]  # the fixture, shared with test_live_verdict

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

CLIENTS = 3  # under close_wait_warning (10), at or over close_wait_unread_warning (2)
REQUEST = b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"  # 34 bytes, never read

# Connects N times, sends ``request`` (maybe empty) on each, and closes it at once.
SENDS_AND_CLOSES = """
import socket, sys
port, count, request = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
for _ in range(count):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(request)
    c.close()
print("ready", flush=True)
sys.stdin.read()
"""


def ss_close_wait(port: int) -> list[tuple[int, str]]:
    """(Recv-Q, users text) of each CLOSE_WAIT row ``ss`` lists on local ``port``."""
    out = subprocess.run(
        ["ss", "-Htanp", "state", "close-wait", f"sport = :{port}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    # With a state filter ss drops the State column: Recv-Q Send-Q Local Peer [users]
    return [(int(row[0]), " ".join(row[4:])) for row in rows]


def scene(children: Children, request: bytes) -> tuple[int, int]:
    """The never-reading server's pid and port, once ss shows its CLOSE_WAIT sockets."""
    server, port_text = children.start(ACCEPTS_NEVER_CLOSES, CLIENTS)
    port = int(port_text)
    children.start(SENDS_AND_CLOSES, port, CLIENTS, request.decode())
    wait_until(lambda: len(ss_close_wait(port)) == CLIENTS, "the server's CLOSE_WAIT sockets")
    return server, port


def test_a_few_close_wait_with_unread_requests_are_a_warning_naming_the_holder(
    children: Children,
) -> None:
    server, port = scene(children, REQUEST)
    rows = ss_close_wait(port)
    # The oracle: the request and the FIN (1) unread, held by the server.
    assert [queued for queued, _ in rows] == [len(REQUEST) + 1] * CLIENTS
    assert all(f"pid={server}," in users for _, users in rows)

    report = analyse(collect_live("netlink"))
    (finding,) = [f for f in report.findings if server in f.subject.pids]
    assert finding.code == UNREAD_DATA
    assert finding.severity is Severity.WARNING
    assert finding.state is TcpState.CLOSE_WAIT
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pid == server
    assert finding.count == CLIENTS
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence[UNREAD_DATA] == CLIENTS
    assert evidence["unread_bytes"] == str(len(REQUEST) + 1)
    # Seconds old: it says what the queue shows, and not that it is a leak.
    assert "they hold data it has not read" in finding.summary
    assert "leak" not in finding.summary
    assert any(item.startswith("whether this is a leak") for item in finding.unchecked)


def test_the_same_scene_pasted_as_ss_tan_warns_without_naming_an_owner(
    children: Children, tmp_path: Path
) -> None:
    _, port = scene(children, REQUEST)
    # Every socket on the port, the listener too: it says which end is the server's (both
    # ports are ephemeral on loopback, so their order would not).
    paste = subprocess.run(
        ["ss", "-tan", f"sport = :{port}"], check=True, capture_output=True, text=True
    ).stdout
    path = tmp_path / "pasted.txt"
    path.write_text(f"$ ss -tan '( sport = :{port} )'\n{paste}", "utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert result.exit_code == 1, result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["code"], finding["severity"], finding["blame"]) == (
        OWNER_UNKNOWN,
        "WARNING",
        "local-application",
    )
    assert finding["pid"] is None
    evidence = {e["name"]: e["value"] for e in finding["evidence"]}
    assert evidence[UNREAD_DATA] == CLIENTS
    assert evidence["unread_bytes"] == str(len(REQUEST) + 1)
    assert any("no process ever accepted them" in item for item in finding["unchecked"])


def test_a_few_close_wait_with_the_fin_alone_give_no_finding(children: Children) -> None:
    server, port = scene(children, b"")
    assert [queued for queued, _ in ss_close_wait(port)] == [1] * CLIENTS  # the FIN alone
    report = analyse(collect_live("netlink"))
    assert [f.code for f in report.findings if server in f.subject.pids] == []
