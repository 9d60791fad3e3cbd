"""Live checks of the other ways in: psutil as a source, running without root, the CLI entry
points. Real loopback sockets, closed in ``finally``; child processes stopped by pid."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcphealth.model import OwnerSource, TcpState
from tcphealth.sources import psutil_source
from tests.privileges import can_drop_to, run_cli_as

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parent.parent


def wait_for_fin_wait2(port: int) -> None:
    """The ACK of the FIN may trail the FIN itself; wait (bounded) until the closer has it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = subprocess.run(
            ["ss", "-tanH", "state", "fin-wait-2", f"( dport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if rows.strip():
            return
        time.sleep(0.02)
    raise AssertionError("the half-closing client never reached FIN_WAIT2")


@pytest.fixture
def close_wait_pair() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    """A listener and a connection the peer has closed, left in CLOSE_WAIT on our side."""
    listener = socket.socket()
    client = socket.socket()
    accepted: socket.socket | None = None
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        client.connect(("127.0.0.1", port))
        accepted, _ = listener.accept()
        client.shutdown(socket.SHUT_WR)
        accepted.settimeout(5)
        # Reading to EOF consumes the FIN: this is the "read everything, never closed" case,
        # so the kernel shows recv_queue 0 for it.
        assert accepted.recv(1) == b""
        wait_for_fin_wait2(port)
        yield listener, accepted, port
    finally:
        for sock in (listener, client, accepted):
            if sock is not None:
                sock.close()


def test_psutil_source_sees_states_and_pids_but_no_queues(
    close_wait_pair: tuple[socket.socket, socket.socket, int],
) -> None:
    _, accepted, port = close_wait_pair
    ours = {port, accepted.getpeername()[1]}
    snap = psutil_source.collect()
    # The pair's own three sockets: a TIME_WAIT of another test that happened to use the same
    # port number (as an ephemeral port, towards somebody else) is not one of them.
    mine = [
        s
        for s in snap.sockets
        if s.local.port in ours and (s.state is TcpState.LISTEN or s.remote.port in ours)
    ]
    states = sorted(s.state.value for s in mine)
    assert states == ["CLOSE_WAIT", "FIN_WAIT2", "LISTEN"]
    for sock in mine:
        assert sock.pids == (os.getpid(),)
        assert sock.owner_source is OwnerSource.FD
        # psutil cannot know these: absent, not zero.
        assert (sock.send_queue, sock.recv_queue, sock.inode, sock.timer) == (None,) * 4
    assert snap.host.source == "psutil"
    assert snap.sysctls.tcp_fin_timeout is None
    assert any(p.pid == os.getpid() and p.name for p in snap.processes)


def run_tcphealth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcphealth", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_python_dash_m_snapshot_finds_our_close_wait(
    close_wait_pair: tuple[socket.socket, socket.socket, int],
) -> None:
    _, _, port = close_wait_pair
    result = run_tcphealth("snapshot", "--netns", "self")  # the namespace our sockets are in
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    sockets = document["snapshot"]["sockets"]
    (close_wait,) = [
        s for s in sockets if s["state"] == "CLOSE_WAIT" and s["local"]["port"] == port
    ]
    assert close_wait["pids"] == [os.getpid()]
    assert close_wait["recv_queue"] == 0  # the application read the FIN (EOF) and kept the fd


@pytest.mark.skipif(not can_drop_to("nobody"), reason="needs root and a 'nobody' user")
def test_without_root_owners_are_marked_unseen_and_said_once(
    close_wait_pair: tuple[socket.socket, socket.socket, int], tmp_path: Path
) -> None:
    _, _, port = close_wait_pair
    code, stdout, stderr = run_cli_as("nobody", ["snapshot", "--netns", "self"], tmp_path)
    assert code == 0, stderr
    snap = json.loads(stdout)["snapshot"]
    assert snap["host"]["privileged"] is False
    assert snap["attribution"]["processes_forbidden"] > 0
    (close_wait,) = [
        s
        for s in snap["sockets"]
        if s["state"] == TcpState.CLOSE_WAIT.value and s["local"]["port"] == port
    ]
    # Our (root's) descriptors are unreadable to nobody: no pid, and marked so.
    assert close_wait["pids"] == []
    assert close_wait["owner_source"] == OwnerSource.UNSEEN.value
    notes = [line for line in stderr.splitlines() if "run as root" in line]
    assert len(notes) == 1, stderr
    assert "Traceback" not in stderr


NOTE_FORBIDDEN = re.compile(
    r"tcphealth: note: the file descriptors of \d+ process\(es\) were not readable, so \d+ "
    r"socket\(s\) have no known owner; run as root to see them"
)
NOTE_PSUTIL = re.compile(
    r"tcphealth: note: \d+ socket\(s\) have no owner psutil could see: this user may not look "
    r"into other users' processes; run as root to see them"
)


@pytest.mark.skipif(not can_drop_to("nobody"), reason="needs root and a 'nobody' user")
@pytest.mark.parametrize(
    ("source", "note"),
    [("netlink", NOTE_FORBIDDEN), ("procfs", NOTE_FORBIDDEN), ("psutil", NOTE_PSUTIL)],
)
def test_without_root_every_source_runs_marks_unseen_and_says_once_how_to_see_more(
    close_wait_pair: tuple[socket.socket, socket.socket, int],
    tmp_path: Path,
    source: str,
    note: re.Pattern[str],
) -> None:
    """The report itself as nobody: exit 0, our CLOSE_WAIT listed with no owner and marked
    unseen, exactly one line on stderr, and it says how to see more."""
    _, _, port = close_wait_pair
    # --netns self: only the caller's namespace, so no note of other namespaces on this machine
    args = ["--source", source, "--port", str(port), "--sockets", "--netns", "self"]
    code, stdout, stderr = run_cli_as("nobody", [*args, "--format", "plain"], tmp_path, 180)
    assert code == 0, stderr
    (line,) = stderr.splitlines()
    assert note.fullmatch(line), line
    (close_wait,) = [line for line in stdout.splitlines() if line.startswith("CLOSE_WAIT local=")]
    assert f"local=127.0.0.1:{port} " in close_wait
    assert " pid=- process=- " in close_wait and " owner=unseen " in close_wait
    code, stdout, _ = run_cli_as("nobody", [*args, "--format", "table"], tmp_path, 180)
    assert code == 0
    # The table does not claim that nobody holds them.
    assert "no process seen holding these" in stdout
    assert "no process holds these" not in stdout
    if source != "psutil":
        assert "read: run as root to see them" in stdout.replace("\n", " ")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("run:", "test:", "lint:"):
        assert f"\n{target}" in makefile
    readme_head = (REPO / "README.md").read_text().splitlines()[:8]
    assert any(line.startswith("make run") for line in readme_head)
    assert any(line.startswith("make test") for line in readme_head)
    assert "make test" in (REPO / ".ci" / "run").read_text()
