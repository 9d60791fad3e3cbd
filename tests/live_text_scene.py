"""Run by tests/test_live_text.py inside its own network and pid namespaces (``unshare -n -p -f
--mount-proc``), so that ``ss`` and ``netstat`` list only the sockets made here, whatever else
the host is doing.

Makes a loopback listener with three accepted connections and one left in the accept queue,
and has every client close: the server side goes to CLOSE_WAIT (three owned, one not
accepted) and the clients to FIN_WAIT2. Then saves ``ss -tanpoei`` and ``netstat -tanpo``
output, reads both back with ``sources.load`` and the live table with ``procfs.collect``, and
prints the three views as JSON. Every socket is closed before it exits.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tcphealth.model import Snapshot
from tcphealth.sources import load, procfs


def view(snapshot: Snapshot) -> list[dict[str, object]]:
    return [
        {
            "local": str(s.local),
            "remote": str(s.remote),
            "state": s.state.value,
            "recv_queue": s.recv_queue,
            "send_queue": s.send_queue,
            "listen_backlog": s.listen_backlog,
            "pids": list(s.pids),
            "owner": s.owner_source.value,
            "timer": s.timer.value if s.timer else None,
            "inode": s.inode,
        }
        for s in snapshot.sockets
    ]


def main(directory: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    opened: list[socket.socket] = []
    try:
        server = socket.socket()
        opened.append(server)
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        clients = []
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            opened.append(client)
            clients.append(client)
            accepted, _ = server.accept()
            opened.append(accepted)
        waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(waiting)
        waiting.sendall(b"hello")
        for client in clients:
            client.sendall(b"abc")
        for client in [*clients, waiting]:
            client.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the namespace's table only: cheap to read
            rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
            states = [row.split()[3] for row in rows]
            # Four CLOSE_WAIT, and every FIN acknowledged (no FIN_WAIT1 left): the ACK of a
            # FIN may trail the FIN itself.
            if states.count("08") == 4 and states.count("05") == 4:
                break
            time.sleep(0.02)
        ss_path, netstat_path = directory / "x.txt", directory / "y.txt"
        with open(ss_path, "w") as out:
            subprocess.run(["ss", "-tanpoei"], stdout=out, check=True, timeout=30)
        with open(netstat_path, "w") as out:
            subprocess.run(["netstat", "-tanpo"], stdout=out, check=True, timeout=30)
        live = procfs.collect()
        result = {
            "pid": __import__("os").getpid(),
            "port": port,
            "live": view(live),
            "ss": view(load(ss_path)),
            "netstat": view(load(netstat_path)),
            "ss_source": load(ss_path).host.source,
            "netstat_source": load(netstat_path).host.source,
        }
        print(json.dumps(result))
    finally:
        for sock in opened:
            sock.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
