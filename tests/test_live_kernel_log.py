"""The kernel's own log lines, made for real in network namespaces this test creates, pasted
beside an ``ss`` capture and the namespace's counters, and read back (issue #22).

* A SYN queue that overflows (final ACKs dropped by nftables, as in a flood) makes the kernel
  print "Possible SYN flooding on port ADDR:PORT. Sending cookies." -- or "Dropping request."
  with tcp_syncookies 0 in the namespace. The listener is bound to an address of 127.0.0.0/8
  of this test's own (lo answers for the whole block), so the line in the host-wide ring
  buffer is this test's. The paste's finding quotes it and agrees with the counters.
* tcp_max_tw_buckets small in a namespace: the kernel counts TCPTimeWaitOverflow; kernels
  since 2.6 no longer print "time wait bucket table overflow", and the test checks what the
  running one does.

tcp_max_orphans and tcp_mem are global to the host, so "too many orphaned sockets" and "out of
memory -- consider tuning tcp_mem" are not made here (the house rules forbid changing a sysctl
outside a namespace of one's own); their lines are tested as text in tests/test_kernel_log.py.

Needs root, ip, ss, nstat, nft and a readable dmesg; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Finding, KernelEvent, Severity, Snapshot
from tcphealth.sources.text.paste import read_paste
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


def _dmesg_readable() -> bool:
    if shutil.which("dmesg") is None:
        return False
    done = subprocess.run(["dmesg"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


pytestmark = [
    *lab_marks("ip", "ss", "nstat", "nft"),
    pytest.mark.skipif(not _dmesg_readable(), reason="needs a readable kernel log (dmesg)"),
]


@pytest.fixture
def netns() -> Iterator[Callable[[str], Namespace]]:
    yield from namespaces()


def dmesg_lines() -> list[str]:
    return run("dmesg").splitlines()


def paste(*parts: tuple[str, str]) -> Snapshot:
    """A transcript as someone pastes it: each command after a root prompt, then its output."""
    text = "".join(f"root@lab:~# {command}\n{output.rstrip()}\n" for command, output in parts)
    return read_paste(text.splitlines(), "paste")[-1]


def codes(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


def evidence(finding: Finding) -> dict[str, Any]:
    return {item.name: item.value for item in finding.evidence}


# Our own address in 127.0.0.0/8: no other test's listener prints it.
ADDRESS = f"127.83.{(os.getpid() >> 8) & 0xFF}.{(os.getpid() & 0xFF) or 1}"
BACKLOG = 8
CONNECTS = 12


def _half_open(ns: Namespace, port: int) -> tuple[subprocess.Popen[str], str | None]:
    """A listener whose handshakes never complete, and the kernel's line naming it, waited for
    a few seconds at most. The line is printed once per listening socket and rate-limited
    host-wide (net_ratelimit: 10 in 5 s), so another test may have used the budget: None."""
    child = ns.start(half_open_script(ADDRESS, port, BACKLOG, CONNECTS))
    assert hear(child) == {"connects": CONNECTS}
    marker = f"Possible SYN flooding on port {ADDRESS}:{port}. "
    for _ in range(25):
        lines = [line for line in dmesg_lines() if marker in line]
        if lines:
            return child, lines[-1]
        time.sleep(0.2)
    return child, None


@pytest.mark.parametrize("cookies", [1, 0])
def test_the_kernel_s_syn_flood_line_is_read_and_agrees_with_ss_and_the_counters(
    netns: Any, cookies: int
) -> None:
    ns = netns("klog")
    # tcp_max_syn_backlog well above the backlog: without cookies the queue then fills to
    # its size, where the kernel logs, instead of dropping early at 3/4 of it (silently).
    ns.sysctl(**{"net.ipv4.tcp_syncookies": cookies, "net.ipv4.tcp_max_syn_backlog": 256})
    line = None
    for attempt in range(3):  # a fresh listener each time: the line is once per socket
        port = 5731 + attempt
        ns.nft(drop_final_acks(f"thlablog{port}", port))
        child, line = _half_open(ns, port)
        if line is not None:
            break
        say(child)
        child.wait(timeout=CHILD_LIMIT)
        time.sleep(5)  # out of the rate limit's window
    assert line is not None, "the kernel printed no SYN flooding line for our listener"
    action = "Sending cookies." if cookies else "Dropping request."
    assert line.endswith(f"Possible SYN flooding on port {ADDRESS}:{port}. {action}")

    table = ns.run("ss", "-tan")
    counters = ns.run(
        "nstat", "-asz", "TcpExtTCPReqQFullDoCookies", "TcpExtTCPReqQFullDrop", "TcpExtListenDrops"
    )
    snapshot = paste(
        ("ss -tan", table), ("dmesg | grep 'SYN flooding'", line), ("nstat -az", counters)
    )
    (message,) = snapshot.kernel_log
    assert (message.event, message.port, message.address, message.cookies) == (
        KernelEvent.SYN_FLOOD,
        port,
        ADDRESS,
        bool(cookies),
    )
    # The look itself shows the queue full (backlog + 1 half open): one finding, the line
    # beside it as more evidence, its counter the namespace's own.
    half_open = len(ns.ss("state", "syn-recv", f"sport = :{port}"))
    assert half_open == BACKLOG + 1
    (finding,) = codes(diagnose(snapshot), "syn-queue-full")
    assert finding.count == half_open
    assert finding.subject.address is not None and str(finding.subject.address) == (
        f"{ADDRESS}:{port}"
    )
    assert evidence(finding)["kernel_log"] == line
    kernel = ns.look().counters
    if cookies:
        assert finding.severity is Severity.WARNING
        assert (
            1 <= evidence(finding)["TCPReqQFullDoCookies"] <= kernel["TcpExt.TCPReqQFullDoCookies"]
        )
    else:
        assert finding.severity is Severity.CRITICAL
        assert 1 <= evidence(finding)["TCPReqQFullDrop"] <= kernel["TcpExt.TCPReqQFullDrop"]

    # The line beside the listener alone (no half-open row pasted): the finding is the log's,
    # about the listener it names, "at the time of the log line".
    listening = ns.run("ss", "-ltn", f"sport = :{port}")
    alone = paste(("ss -ltn", listening), ("dmesg | tail -1", line))
    (logged,) = codes(diagnose(alone), "syn-queue-full")
    assert str(logged.subject.address) == f"{ADDRESS}:{port}"
    assert logged.blame is Blame.REMOTE_PEER  # the accept queue has room: not a stuck accept
    assert logged.severity is (Severity.WARNING if cookies else Severity.CRITICAL)
    assert "at the time of the log line" in logged.summary
    say(child)
    child.wait(timeout=CHILD_LIMIT)


TIME_WAITS = """
import json, socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 5741)); listener.listen(16)
for _ in range(COUNT):
    client = socket.create_connection(("127.0.0.1", 5741))
    server, _ = listener.accept()
    client.close()  # the client closes first: its end waits in TIME_WAIT, if it may
    assert server.recv(1) == b""
    server.close()
print(json.dumps({"closed": COUNT}), flush=True)
sys.stdin.readline()
"""


def test_time_wait_over_the_bucket_limit_is_counted_and_what_the_kernel_logs_is_read(
    netns: Any,
) -> None:
    ns = netns("ktw")
    ns.sysctl(**{"net.ipv4.tcp_max_tw_buckets": 2})
    marker = "time wait bucket table overflow"
    before = sum(1 for line in dmesg_lines() if marker in line)
    child = ns.start(TIME_WAITS.replace("COUNT", "6"))
    assert hear(child) == {"closed": 6}
    printed = [line for line in dmesg_lines() if marker in line][before:]
    table = ns.run("ss", "-tan", "state", "time-wait")
    counters = ns.run("nstat", "-asz", "TcpExtTCPTimeWaitOverflow")
    parts = [
        ("sysctl net.ipv4.tcp_max_tw_buckets", ns.run("sysctl", "net.ipv4.tcp_max_tw_buckets")),
        ("ss -tan state time-wait", table),
        ("nstat -az TcpExtTCPTimeWaitOverflow", counters),
    ]
    if printed:  # a kernel that still logs it (2.6): the line is quoted
        parts.append(("dmesg | grep overflow", printed[-1]))
    snapshot = paste(*parts)
    overflows = ns.look().counters["TcpExt.TCPTimeWaitOverflow"]
    assert overflows == 4 == snapshot.counters["TcpExt.TCPTimeWaitOverflow"]
    assert len(ns.ss("state", "time-wait")) == 2
    (finding,) = codes(diagnose(snapshot), "time-wait-bucket-limit")
    assert finding.severity is Severity.CRITICAL  # at the ceiling: 2 of 2
    assert evidence(finding)["TCPTimeWaitOverflow"] == 4
    if printed:
        assert evidence(finding)["kernel_log"] == printed[-1]
    else:
        # This kernel counts the overflow without a word in its log (since 2.6).
        assert not snapshot.kernel_log
        assert "kernel_log" not in evidence(finding)
    say(child)
    child.wait(timeout=CHILD_LIMIT)
