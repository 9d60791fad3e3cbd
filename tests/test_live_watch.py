"""Time on a live kernel (issue 8): CLOSE_WAIT held by this test process, followed by
``tcphealth watch`` and ``--samples`` run as a user would (a subprocess), with ``ss`` as the
oracle for the state.

Every socket is closed and every subprocess stopped by pid in a finally or a fixture's
teardown, also when an assertion fails. Nothing leaves loopback; every loop is bounded in
count and in time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

TCPHEALTH = [sys.executable, "-m", "tcphealth"]
# The sockets of this test live in the caller's network namespace; other namespaces on the
# machine (other tests', the lab's) are not read, so what is compared stays the test's own.
THIS_NETNS = ["--netns", "self"]
TIMEOUT = 60.0  # generous: the machine may be busy with a benchmark


def own_name() -> str:
    with open(f"/proc/{os.getpid()}/comm", encoding="utf-8") as handle:
        return handle.read().strip()


@dataclass
class CloseWaits:
    """A listener of this process and connections to it whose clients closed: the accepted
    ends sit in CLOSE_WAIT, held by this process, until closed here."""

    listener: socket.socket
    held: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def add(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        server, _ = self.listener.accept()
        client.close()  # the FIN: the accepted end goes to CLOSE_WAIT and stays there
        self.held.append(server)
        return server

    def close_all(self) -> None:
        for sock in self.held:
            sock.close()
        self.held.clear()


@pytest.fixture
def close_waits() -> Iterator[CloseWaits]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(5)
    scene = CloseWaits(listener)
    try:
        yield scene
    finally:
        scene.close_all()
        listener.close()


def ss_close_wait_ports(port: int) -> list[int]:
    """The remote ports of the CLOSE_WAIT sockets on local port ``port``, as ss lists them."""
    out = subprocess.run(
        ["ss", "-Htan", "state", "close-wait", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout
    return sorted(int(line.split()[-1].rsplit(":", 1)[1]) for line in out.splitlines())


def sampled_report(port: int, *, interval: float, pid: int | None = None) -> dict[str, Any]:
    """`tcphealth --samples 3` as JSON, for the sockets of ``pid`` (this process unless
    given) on ``port``."""
    result = subprocess.run(
        [
            *TCPHEALTH,
            "--samples",
            "3",
            "--interval",
            str(interval),
            "--format",
            "json",
            "--pid",
            str(os.getpid() if pid is None else pid),
            "--port",
            str(port),
            *THIS_NETNS,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_watch_ndjson_follows_a_close_wait_and_its_age_grows(close_waits: CloseWaits) -> None:
    held = close_waits.add()
    peer_port = held.getpeername()[1]
    assert ss_close_wait_ports(close_waits.port) == [peer_port]
    result = subprocess.run(
        [
            *TCPHEALTH,
            "watch",
            "--count",
            "3",
            "--interval",
            "1",
            "--format",
            "ndjson",
            "--sockets",
            "--state",
            "close-wait",
            "--port",
            str(close_waits.port),
            *THIS_NETNS,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [record["sample"] for record in records] == [1, 2, 3]
    ages = []
    for record in records:
        (sock,) = record["sockets"]
        assert (sock["state"], sock["remote"]) == ("CLOSE_WAIT", f"127.0.0.1:{peer_port}")
        assert (sock["pids"], sock["process"]) == ([os.getpid()], own_name())
        assert sock["samples_seen"] == record["sample"]
        ages.append(sock["age_seconds"])
        # The kernel's floor (time since the FIN's ACK) never undercuts what we observed.
        assert sock["age_at_least_seconds"] >= sock["age_seconds"]
    assert ages[0] == 0.0
    assert ages[0] < ages[1] < ages[2]
    assert 1.5 <= ages[2] <= 30.0
    assert ss_close_wait_ports(close_waits.port) == [peer_port]  # still there: it was not us
    assert result.stderr.splitlines()[-1].startswith("tcphealth: watch: 3 samples over ")


def test_samples_call_close_wait_that_stays_a_leak(close_waits: CloseWaits) -> None:
    for _ in range(12):
        close_waits.add()
    document = sampled_report(close_waits.port, interval=0.5)
    (finding,) = [f for f in document["findings"] if f["state"] == "CLOSE_WAIT"]
    assert (finding["code"], finding["pid"], finding["count"]) == (
        "close-wait-not-reading",
        os.getpid(),
        12,
    )
    stayed = next(item for item in finding["evidence"] if item["name"] == "stayed")
    assert stayed["value"] == 12
    assert document["series"]["samples"] == 3
    assert len(ss_close_wait_ports(close_waits.port)) == 12


# A slow closer in a process of its own: it connects to its own listener and closes the client
# end (the accepted end goes to CLOSE_WAIT), keeps at least HELD such ends and closes each once
# it is LIFETIME seconds old. Each end's life is set by the clock, not by the pace of the loop:
# when the loop was paced (one new end every 0.34 s, the oldest closed beyond 12) a loaded
# machine slowed it, the ends outlived tcphealth's 5 s interval and half of each sample was
# still there in the next (replaced_ratio 0.5). New ends are made before old ones are closed,
# so a sample never sees fewer than HELD. It prints its port once the first HELD are held, and
# stops at a deadline, after 2000 connections, or when its stdin closes. It runs apart from
# pytest's process so that the finding about its pid is about these sockets alone.
SLOW_CLOSER = """
import select, socket, sys, time
HELD, LIFETIME = 16, 3.0
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
port = listener.getsockname()[1]
held = []  # (made at, accepted end), oldest first
def top_up():
    while len(held) < HELD:
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        server, _ = listener.accept()
        client.close()
        held.append((time.monotonic(), server))
top_up()
print(port, flush=True)
deadline = time.monotonic() + 40
made = HELD
while time.monotonic() < deadline and made < 2000:
    if select.select([sys.stdin], [], [], 0.05)[0]:
        break  # stdin closed: the test is done
    young = [pair for pair in held if time.monotonic() - pair[0] < LIFETIME]
    old = [pair for pair in held if pair not in young]
    before = len(young)
    held[:] = young
    top_up()
    made += len(held) - before
    for _, server in old:
        server.close()
"""


def test_samples_call_close_wait_replaced_all_the_time_a_slow_close() -> None:
    """A process keeps 16 CLOSE_WAIT or more, each closed 3 s after it appeared, while
    tcphealth samples every 5 s: every sample sees other sockets. (Each lives longer than a
    scan of a busy host takes, so its owner is still there to be found.)"""
    closer = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLOSER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert closer.stdout is not None
        port = int(closer.stdout.readline())
        assert len(ss_close_wait_ports(port)) >= 16
        document = sampled_report(port, interval=5, pid=closer.pid)
    finally:
        closer.kill()
        closer.wait(timeout=TIMEOUT)
        for stream in (closer.stdin, closer.stdout):
            if stream is not None:
                stream.close()
    (finding,) = [f for f in document["findings"] if f["state"] == "CLOSE_WAIT"]
    assert (finding["code"], finding["pid"]) == ("close-wait-slow-close", closer.pid)
    # The finding counts the closer's CLOSE_WAIT and nothing else: 16, or up to 32 for the
    # moment between new ones and the close of the old.
    assert 16 <= finding["count"] <= 32
    replaced = next(item for item in finding["evidence"] if item["name"] == "replaced_ratio")
    assert replaced["value"] >= 0.8


def test_ctrl_c_ends_watch_with_a_summary_and_130(close_waits: CloseWaits) -> None:
    close_waits.add()
    child = subprocess.Popen(
        [*TCPHEALTH, "watch", "--interval", "0.3", "--port", str(close_waits.port), *THIS_NETNS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach it even when the suite runs under a shell that ignores SIGINT
        # (a background job): an ignored SIGINT is inherited, and Python then leaves it so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()  # a plain line, flushed as soon as it was made
        assert first.startswith("SERIES samples=1 ")
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=TIMEOUT)
    assert child.returncode == 130
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith("tcphealth: watch: ")


_SIZE_AND_COLOR = ("LINES", "COLUMNS", "NO_COLOR")


def test_watch_on_a_terminal_redraws_a_live_view(close_waits: CloseWaits) -> None:
    for _ in range(11):
        close_waits.add()
    pid, fd = pty.fork()
    if pid == 0:  # the child: tcphealth on a pseudo-terminal, as a person would run it
        # 80x40: the view is fitted to the terminal's height (issue #24), and the process
        # table with its AGE column must fit under the finding
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
        # The environment is given whole: the height must come from the terminal, and
        # importing readline (pytest's pdb does) exported LINES=24 below os.environ's view.
        environ = {key: value for key, value in os.environ.items() if key not in _SIZE_AND_COLOR}
        environ.update({"COLUMNS": "80", "TERM": "xterm-256color"})
        port = str(close_waits.port)
        os.execve(
            sys.executable,
            [*TCPHEALTH, "watch", "--count", "2", "--interval", "0.5", "--port", port, *THIS_NETNS],
            environ,
        )
    output = b""
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal: it has ended
                break
            if not chunk:
                break
            output += chunk
    finally:
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode("utf-8", "replace")
    assert "Traceback" not in text
    assert "sample 2/2" in text
    assert "close-wait-not-reading" in text
    assert "\x1b[" in text  # colour and cursor movement: it was a terminal
    assert "AGE" in text
