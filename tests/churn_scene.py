"""Run by tests/test_live_churn.py inside its own network and pid namespaces (``unshare -n -p
-f --mount-proc``), so that the dumps and the /proc walk see only this scene, however busy the
host is.

A forked churner keeps opening and closing loopback connections and forking children that each
hold a connection for a few milliseconds, while this process runs the collection (netlink and
procfs in turn, with the process walk) and checks every snapshot with
:func:`check_consistent`. It prints a JSON summary; a failed check is a traceback and a
non-zero exit. The churner is bounded (10 children at a time, each gone within 30 ms, 100
open connections, a deadline) and is killed by its pid at the end; when this process, pid 1 of
the namespace, exits, the kernel ends anything left in it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter

from tcphealth import sources
from tcphealth.model import OwnerSource, Snapshot, TcpState
from tcphealth.pipeline import analyse

MAX_CHILDREN = 10
MAX_CONNECTIONS = 100
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def churn(listener: socket.socket, deadline: float) -> None:
    """The churner's loop; never returns."""
    port = listener.getsockname()[1]
    listener.setblocking(False)
    conns: list[socket.socket] = []
    children: list[int] = []
    while time.monotonic() < deadline:
        for _ in range(2):
            conns.append(socket.create_connection(("127.0.0.1", port)))
        while True:
            try:
                conns.append(listener.accept()[0])
            except BlockingIOError:
                break
        random.shuffle(conns)
        while len(conns) > MAX_CONNECTIONS:
            closing = conns.pop()
            if random.random() < 0.8:
                # Most end with a reset: no TIME_WAIT, so the table churns without growing.
                closing.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            closing.close()
        if len(children) < MAX_CHILDREN:
            held = socket.create_connection(("127.0.0.1", port))
            pid = os.fork()
            if pid == 0:  # holds the connection (and what it inherited) for a moment
                time.sleep(random.uniform(0.001, 0.03))
                os._exit(0)
            held.close()
            children.append(pid)
        for pid in list(children):
            if os.waitpid(pid, os.WNOHANG)[0]:
                children.remove(pid)
        time.sleep(0.003)
    for pid in children:
        os.waitpid(pid, 0)
    os._exit(0)


def check_consistent(snapshot: Snapshot, churner: int, port: int) -> set[int]:
    """Assert what must hold within one snapshot, however much changed while it was taken;
    return the pids seen holding sockets."""
    sockets = snapshot.sockets
    report = analyse(snapshot)
    # Counts agree: per state, in the report, in the snapshot.
    assert sum(report.states.values()) == report.socket_count == len(sockets)
    assert Counter(sock.state for sock in sockets) == {
        state: count for state, count in report.states.items() if count
    }
    # No socket twice: by cookie (netlink), by 4-tuple and inode (both).
    if snapshot.host.source == "netlink":
        cookies = [sock.cookie for sock in sockets]
        assert None not in cookies and len(set(cookies)) == len(cookies)
    keys = [(sock.local, sock.remote, sock.inode) for sock in sockets]
    assert len(set(keys)) == len(keys)
    # Every pid a socket names is a listed process, listed once.
    pids = [process.pid for process in snapshot.processes]
    assert len(set(pids)) == len(pids)
    holders = {pid for sock in sockets for pid in sock.pids}
    assert holders <= set(pids)
    for sock in sockets:
        assert bool(sock.pids) == (sock.owner_source in (OwnerSource.FD, OwnerSource.LISTENER))
    # A process that exited before its name was read is counted, and said in a note.
    nameless = [process for process in snapshot.processes if process.name is None]
    assert snapshot.attribution.processes_vanished >= len(nameless)
    if nameless:
        assert any("exited while they were read" in note for note in snapshot.notes)
    # The listener is there every time, held by the churner (and children that inherited it).
    (listener,) = [
        sock for sock in sockets if sock.state is TcpState.LISTEN and sock.local.port == port
    ]
    assert churner in listener.pids
    return holders


def main(runs: int) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    port = listener.getsockname()[1]
    churner = os.fork()
    if churner == 0:
        churn(listener, time.monotonic() + 240)  # a hard bound, whatever happens here
    listener.close()  # the churner holds it
    owners: set[int] = set()
    vanished = nameless = sockets = 0
    started = time.monotonic()
    try:
        for run in range(runs):
            snapshot = sources.collect_live("netlink" if run % 2 == 0 else "procfs")
            owners |= check_consistent(snapshot, churner, port)
            vanished += snapshot.attribution.processes_vanished
            nameless += sum(1 for process in snapshot.processes if process.name is None)
            sockets += len(snapshot.sockets)
    finally:
        os.kill(churner, signal.SIGKILL)
        os.waitpid(churner, 0)
    summary = {
        "runs": runs,
        "churner": churner,
        "children_seen": len(owners - {churner}),
        "vanished": vanished,
        "nameless": nameless,
        "sockets": sockets,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(int(sys.argv[1]))
