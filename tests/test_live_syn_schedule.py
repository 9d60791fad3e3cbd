"""When does an unanswered connect() fail? The kernel decides, in a namespace of our own.

tcphealth says how long a SYN_SENT can last (``explain SYN_SENT``, the syn-sent findings) from
``tcp_syn_retries`` and, on kernels that have it, ``tcp_syn_linear_timeouts`` (states.syn_schedule).
Here a child connects, inside a fresh network namespace, to a listener whose full accept queue
drops its SYNs, and times how long connect() takes to fail with ETIMEDOUT. tcphealth, looking
into the same namespace, must read the settings the test gave it and predict that time.

The settings are chosen small (1 retry) so that each case takes 3-4 s, and so that the two
schedules disagree: with one linear timeout the attempt ends at 4 s, with none at 3 s.

Needs root and ip (iproute2); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tcphealth.model import TcpState
from tcphealth.sources import collect_live
from tcphealth.states import explain
from tests.live_netns import lab_marks

pytestmark = lab_marks("ip")

PREFIX = "thlab"  # lab/netns_lab.py's: its leftover check covers these namespaces too
CONNECT_LIMIT = 30.0  # seconds; every case here fails in under 5

# In the namespace: a listener with backlog 0 that never accepts, three connects that fill its
# queue, then the timed connect() whose SYNs the full queue drops.
CLIENT = """
import json, socket, time
deaf = socket.socket(); deaf.bind(("127.0.0.1", 0)); deaf.listen(0)
port = deaf.getsockname()[1]
fillers = []
for _ in range(3):
    s = socket.socket(); s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fillers.append(s)
time.sleep(0.3)
timed = socket.socket(); timed.settimeout(%(limit)s)
print(json.dumps({"port": port}), flush=True)
started = time.monotonic()
try:
    timed.connect(("127.0.0.1", port))
    error = None
except OSError as failure:
    error = failure.errno
print(json.dumps({"seconds": time.monotonic() - started, "errno": error}), flush=True)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    """Names handed out by the test; each is deleted afterwards, whatever happened."""
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def make_namespace(made: list[str], retries: int, linear: int) -> str:
    name = f"{PREFIX}syn{os.getpid()}x{len(made)}"
    ip("netns", "add", name)
    made.append(name)
    ip("-n", name, "link", "set", "lo", "up")
    settings = {"tcp_syn_retries": retries, "tcp_syn_linear_timeouts": linear}
    for key, value in settings.items():
        result = subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv4.{key}={value}"],
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            pytest.skip(f"this kernel has no net.ipv4.{key}")
    return name


def test_connect_fails_when_tcphealth_says_it_will(namespaces: list[str]) -> None:
    cases = {(1, 1): 4.0, (1, 0): 3.0}  # (retries, linear timeouts) -> the schedule's answer
    started: dict[tuple[int, int], tuple[str, subprocess.Popen[str]]] = {}
    try:
        for settings in cases:
            name = make_namespace(namespaces, *settings)
            child = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    name,
                    sys.executable,
                    "-c",
                    CLIENT % {"limit": CONNECT_LIMIT},
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            started[settings] = (name, child)
        for settings, (name, child) in started.items():
            assert child.stdout is not None
            json.loads(child.stdout.readline())  # the queue is full, the timed connect() begins
            snapshot = collect_live("netlink", netns=name, with_processes=False)
            retries, linear = settings
            assert (snapshot.sysctls.tcp_syn_retries, snapshot.sysctls.tcp_syn_linear_timeouts) == (
                retries,
                linear,
            )
            assert explain(TcpState.SYN_SENT, snapshot.sysctls).limit_seconds == cases[settings]
            assert any(s.state is TcpState.SYN_SENT for s in snapshot.sockets)
        deadline = time.monotonic() + CONNECT_LIMIT + 10
        for settings, (_, child) in started.items():
            out, _ = child.communicate(timeout=max(deadline - time.monotonic(), 1))
            result = json.loads(out.splitlines()[-1])
            assert result["errno"] == 110, result  # ETIMEDOUT: the kernel gave up
            # The kernel's timer fires at the predicted time or a little after, never before;
            # the two schedules here are a whole second apart.
            assert -0.05 <= result["seconds"] - cases[settings] < 0.75, (settings, result)
    finally:
        for _, child in started.values():
            if child.poll() is None:
                child.kill()  # our own child, by its handle
                child.wait(timeout=10)
