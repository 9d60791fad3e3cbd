"""A few CLOSE_WAIT and held FIN_WAIT2, made for real on loopback in this test process: both
states have no timer, so below their warning counts it is their age that decides between a
moment and a leak (issue 22, close-wait-age-decides / fin-wait2-age-decides).

The scene: a listener here accepts CONNECTIONS connections; the client end of each shuts down
its sending side and keeps its descriptor. The server ends, which never close, sit in
CLOSE_WAIT and the client ends in FIN_WAIT2, all held by this process. ``ss`` is the oracle
for the states and the pid. Then:

* pasted (``ss -tanp``: no age in the text), tcphealth says the age decides, about this pid,
  and the verdict says so instead of "no problems found";
* looked at live (tcp_info gives each an age of a moment), it says nothing about them;
* looked at live once they have outlasted a short ``close_wait_leak_seconds`` /
  ``stuck_seconds``, it says they have lasted.

Every socket is closed in the fixture's teardown, also when a test fails; nothing leaves
loopback and every wait is bounded (tests/test_live_verdict.py's wait_until).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.rules.close_wait import AGE_DECIDES
from tcphealth.diagnose.rules.closing import FIN_WAIT2_AGE_DECIDES
from tcphealth.diagnose.timeline import kernel_age_floor
from tcphealth.filters import SocketFilter
from tcphealth.model import Finding, Severity, TcpState
from tcphealth.pipeline import analyse
from tcphealth.sources import collect_live
from tests.test_live_verdict import ss_count, wait_until

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

CONNECTIONS = 3  # below close_wait_warning and fin_wait2_held_warning (10)
SHORT = 1.0  # seconds: a leak/stuck limit the scene outlasts in a bounded wait


class Scene:
    """The listener, the accepted (server) ends and the half-closed client ends."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.listener = self._keep(socket.socket())
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(CONNECTIONS)
        self.port: int = self.listener.getsockname()[1]
        for _ in range(CONNECTIONS):
            client = self._keep(socket.create_connection(("127.0.0.1", self.port), timeout=5))
            self._keep(self.listener.accept()[0])
            client.shutdown(socket.SHUT_WR)  # FIN sent; the descriptor stays open

    def _keep(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    @property
    def filter(self) -> str:
        return f"( sport = :{self.port} or dport = :{self.port} )"


@pytest.fixture
def scene() -> Iterator[Scene]:
    made = Scene()
    try:
        # The oracle: every server end in CLOSE_WAIT, every client end in FIN_WAIT2, ours.
        wait_until(
            lambda: (
                ss_count("close-wait", made.filter, users=True) == CONNECTIONS
                and ss_count("fin-wait-2", made.filter, users=True) == CONNECTIONS
            ),
            "the scene's CLOSE_WAIT and FIN_WAIT2",
        )
        yield made
    finally:
        made.close()


def ss_tanp(scene: Scene) -> str:
    """What a user pastes: the prompt and ``ss -tanp`` of the scene's port."""
    out = subprocess.run(
        ["ss", "-tanp", scene.filter], check=True, capture_output=True, text=True
    ).stdout
    return f"$ ss -tanp '{scene.filter}'\n{out}"


def ours(findings: list[Finding] | tuple[Finding, ...], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code and os.getpid() in f.subject.pids]


def test_a_pasted_few_are_findings_whose_age_decides(scene: Scene, tmp_path: Path) -> None:
    path = tmp_path / "pasted.txt"
    path.write_text(ss_tanp(scene), "utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output  # INFO: below --fail-on warning
    found = {f["code"]: f for f in json.loads(result.stdout)["findings"]}
    assert set(found) == {AGE_DECIDES, FIN_WAIT2_AGE_DECIDES}, found
    for code, state in ((AGE_DECIDES, "CLOSE_WAIT"), (FIN_WAIT2_AGE_DECIDES, "FIN_WAIT2")):
        finding = found[code]
        assert (finding["severity"], finding["state"], finding["pid"], finding["count"]) == (
            "INFO",
            state,
            os.getpid(),
            CONNECTIONS,
        )
        evidence = {item["name"]: item["value"] for item in finding["evidence"]}
        assert evidence["age_unknown"] == CONNECTIONS
        assert "a second look after 60 s settles it" in finding["unchecked"][0]
    # Both ends are this process's: the half-closer waits on a local peer, a local fix.
    assert found[FIN_WAIT2_AGE_DECIDES]["blame"] == "local-application"

    table = CliRunner().invoke(
        main, ["--from", str(path), "--format", "table"], env={"COLUMNS": "200"}
    )
    lines = table.stdout.splitlines()
    assert (
        f"Verdict: nothing over the thresholds; {2 * CONNECTIONS} sockets whose age decides "
        "(2 info)" in lines
    )
    assert not any("no problems found" in line for line in lines)
    assert not any("with nothing wrong" in line and f"pid {os.getpid()})" in line for line in lines)


def test_a_live_look_at_young_ones_says_nothing_about_them(scene: Scene) -> None:
    snapshot = collect_live()
    mine = [
        sock
        for sock in snapshot.sockets
        if scene.port in (sock.local.port, sock.remote.port)
        and sock.state in (TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2)
    ]
    assert len(mine) == 2 * CONNECTIONS  # the oracle's count, seen by the live source
    # Each has an age from tcp_info, a moment old: under the 60 s limits.
    ages = [kernel_age_floor(sock) for sock in mine]
    assert all(age is not None and age < 60 for age in ages), ages
    whole = analyse(snapshot).findings
    assert not ours(whole, AGE_DECIDES) and not ours(whole, FIN_WAIT2_AGE_DECIDES)
    # The same under a filter that selects only them.
    port = analyse(snapshot, SocketFilter(ports=frozenset({scene.port}))).findings
    assert not ours(port, AGE_DECIDES) and not ours(port, FIN_WAIT2_AGE_DECIDES)


def test_a_live_look_once_they_have_lasted_says_so(scene: Scene) -> None:
    limits = Thresholds(close_wait_leak_seconds=SHORT, stuck_seconds=SHORT)

    def lasted() -> bool:
        ages = [
            kernel_age_floor(sock)
            for sock in collect_live(with_processes=False).sockets
            if scene.port in (sock.local.port, sock.remote.port)
            and sock.state in (TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2)
        ]
        return len(ages) == 2 * CONNECTIONS and all(a is not None and a >= SHORT for a in ages)

    wait_until(lasted, f"the scene's sockets to be {SHORT:g} s old by tcp_info")
    findings = analyse(collect_live(), thresholds=limits).findings
    (close_wait,) = ours(findings, AGE_DECIDES)
    (fin_wait2,) = ours(findings, FIN_WAIT2_AGE_DECIDES)
    for finding in (close_wait, fin_wait2):
        evidence = {item.name: item.value for item in finding.evidence}
        assert (finding.severity, finding.count, evidence["lasting"]) == (
            Severity.INFO,
            CONNECTIONS,
            CONNECTIONS,
        )
        assert "age_unknown" not in evidence and not finding.unchecked
    assert "past the 1 s a slow close explains" in close_wait.summary
