"""Rows as the kernel leaves them: a service on a port of the ephemeral range whose listener has
closed. Its clients' TIME_WAIT have both ports in the range and no LISTEN row to say which end
is the service, so the end they share must be taken for it: one row for the five, as ``ss``
counts them, not five rows under the clients' ports.

Every socket is closed in a ``finally``, also when the test fails. Nothing leaves loopback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

CLIENTS = 5


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def time_wait_toward(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Htan", "state", "time-wait", "dst", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.splitlines())


def test_clients_of_a_closed_ephemeral_port_service_make_one_row() -> None:
    opened: list[socket.socket] = []
    try:
        listener = socket.socket()
        opened.append(listener)
        listener.bind(("127.0.0.1", 0))  # the kernel picks from the ephemeral range
        listener.listen(CLIENTS)
        port = listener.getsockname()[1]
        low, high = ephemeral_range()
        assert low <= port <= high
        clients, servers = [], []
        for _ in range(CLIENTS):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            opened.append(client)
            clients.append(client)
            server, _ = listener.accept()
            opened.append(server)
            servers.append(server)
        listener.close()
        # The clients close first, so theirs is the TIME_WAIT end.
        for client in clients:
            client.close()
        for server in servers:
            server.close()
        deadline = time.monotonic() + 10
        while time_wait_toward(port) < CLIENTS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert time_wait_toward(port) == CLIENTS

        out = subprocess.run(
            [sys.executable, "-m", "tcphealth", "--port", str(port), "--netns", "self"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        rows = [line for line in out.stdout.splitlines() if line.startswith("TIME_WAIT ")]
        assert len(rows) == 1, out.stdout
        assert f"count={CLIENTS} local=127.0.0.1:* remote=127.0.0.1:{port} " in rows[0]
    finally:
        for one in opened:
            one.close()
