"""A program's own error line beside a listing (issue #22's fourth pass), with the kernel as
the oracle: the errors are made for real in network namespaces of our own, their lines are
pasted after ``ss`` output as a reporter pastes them, and tcphealth's reading is compared with
what the kernel shows.

- EMFILE: a server whose RLIMIT_NOFILE is small accepts until accept() fails; /proc shows it
  holding exactly its limit of descriptors. Pasted with its ``ss -tanp`` rows (the one process
  the paste names), the line is that process's: critical, with its pid.
- EADDRNOTAVAIL: a client in a namespace whose ``ip_local_port_range`` holds ten ports connects
  until connect() fails; ``ss`` shows the ten connections. With the range pasted too, the
  ports finding for that destination carries the line; without it, the line alone warns and
  says which fact would tell its cause.
- EADDRINUSE: a client that binds its source port closes first, and binding that port again
  fails while ``ss`` shows its connection in TIME_WAIT; pasted together, the TIME_WAIT is read
  as what blocks the bind, on that port.

Every child lives under ``timeout`` and is killed by its handle and waited for, and every
namespace deleted, whatever happens. Needs root, ip (iproute2) and ss.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live_netns import (
    Namespace,
    check_paste,
    hear,
    lab_marks,
    namespaces,
    say,
    until,
    with_code,
)

pytestmark = lab_marks("ip", "ss")


@pytest.fixture
def netns() -> Iterator[Callable[[str], Namespace]]:
    yield from namespaces()


# --- EMFILE -------------------------------------------------------------------------------------

LIMIT = 32  # the server's RLIMIT_NOFILE: stdin, stdout, stderr, the listener and 28 connections
CLIENTS = 40  # more than it can accept

SERVER = f"""
import errno, json, os, resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(json.dumps({{"pid": os.getpid(), "port": listener.getsockname()[1]}}), flush=True)
sys.stdin.readline()  # the clients are connected
listener.setblocking(False)
held, error = [], None
while error is None:
    try:
        held.append(listener.accept()[0])
    except OSError as failed:
        if failed.errno != errno.EMFILE:
            break
        error = f"accept: {{failed}}"
print(json.dumps({{"error": error, "accepted": len(held)}}), flush=True)
sys.stdin.readline()
"""

CLIENT = f"""
import json, socket, sys
port = int(sys.stdin.readline())
held = [socket.create_connection(("127.0.0.1", port)) for _ in range({CLIENTS})]
print(json.dumps({{"connected": len(held)}}), flush=True)
sys.stdin.readline()
"""


def test_an_emfile_line_pasted_with_the_one_process_s_rows_is_that_process_out_of_descriptors(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("emf")
    server = ns.start(SERVER)
    started = hear(server)
    pid, port = started["pid"], started["port"]
    client = ns.start(CLIENT)
    say(client, str(port))
    assert hear(client)["connected"] == CLIENTS
    say(server)
    ran_out = hear(server)
    # The kernel's side: accept() failed with EMFILE, and the process holds its limit exactly.
    assert ran_out["error"] is not None and os.strerror(errno.EMFILE) in ran_out["error"]
    assert len(os.listdir(f"/proc/{pid}/fd")) == LIMIT

    rows = ns.run("ss", "-tanp", f"( sport = :{port} )")
    assert f"pid={pid}," in rows
    code, findings = check_paste(tmp_path, "emfile.txt", rows + ran_out["error"] + "\n")
    (found,) = with_code(findings, "fd-exhausted-logged")
    assert code == 2
    assert (found["severity"], found["blame"], found["pid"], found["state"]) == (
        "CRITICAL",
        "local-application",
        pid,
        None,
    )
    line = {e["name"]: e["value"] for e in found["evidence"]}["error_line"]
    assert line == ran_out["error"]

    # The same rows without the line: nothing says the limit was reached.
    _, without = check_paste(tmp_path, "rows.txt", rows)
    assert with_code(without, "fd-exhausted-logged") == []


# --- EADDRNOTAVAIL ------------------------------------------------------------------------------

PORTS = (40000, 40009)  # ten ephemeral ports

CONNECTOR = """
import json, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 5555))
listener.listen(64)
held, error = [], None
for _ in range(20):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 5555))
    except OSError as failed:
        s.close()
        error = f"connect: {failed}"
        break
    held.append(s)
print(json.dumps({"error": error, "connected": len(held)}), flush=True)
sys.stdin.readline()
"""


def test_a_no_free_port_line_is_read_with_the_ports_it_ran_out_of_or_alone(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("eadd")
    ns.sysctl(**{"net.ipv4.ip_local_port_range": f"{PORTS[0]} {PORTS[1]}"})
    failed = hear(ns.start(CONNECTOR))
    supply = PORTS[1] - PORTS[0] + 1
    # The kernel's side: connect() failed with EADDRNOTAVAIL once the ten ports were taken.
    assert failed["error"] is not None and os.strerror(errno.EADDRNOTAVAIL) in failed["error"]
    assert failed["connected"] == supply
    until(lambda: len(ns.ss("state", "established", "( dport = :5555 )")) == supply)

    rows = ns.run("ss", "-tan")
    range_line = f"net.ipv4.ip_local_port_range = {PORTS[0]}\t{PORTS[1]}\n"
    code, findings = check_paste(
        tmp_path, "with-range.txt", rows + range_line + failed["error"] + "\n"
    )
    (found,) = with_code(findings, "ephemeral-ports-exhausting")
    assert code == 2
    assert (found["severity"], found["count"]) == ("CRITICAL", supply)
    evidence = {e["name"]: e["value"] for e in found["evidence"]}
    assert evidence["error_line"] == failed["error"]
    assert with_code(findings, "ports-unavailable-logged") == []

    # Without the range the ten ports look like few of the default's: the line alone warns.
    code, alone = check_paste(tmp_path, "alone.txt", rows + failed["error"] + "\n")
    (line_only,) = with_code(alone, "ports-unavailable-logged")
    assert code == 1
    assert line_only["severity"] == "WARNING"
    assert with_code(alone, "ephemeral-ports-exhausting") == []


# --- EADDRINUSE ---------------------------------------------------------------------------------

REBINDER = """
import json, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 5556))
listener.listen(8)
client = socket.socket()
client.bind(("127.0.0.1", 0))
port = client.getsockname()[1]
client.connect(("127.0.0.1", 5556))
server_side, _ = listener.accept()
client.close()  # the client closes first: its end goes to TIME_WAIT once the server closes
server_side.close()
time.sleep(0.2)
again = socket.socket()
try:
    again.bind(("127.0.0.1", port))
    error = None
except OSError as failed:
    error = f"bind: {failed}"
print(json.dumps({"port": port, "error": error}), flush=True)
sys.stdin.readline()
"""


def test_an_address_in_use_pasted_beside_the_time_wait_of_that_port_is_read_as_its_cause(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("inuse")
    rebind = hear(ns.start(REBINDER))
    port = rebind["port"]
    # The kernel's side: the port's connection is in TIME_WAIT, and bind() to it failed.
    assert rebind["error"] is not None and os.strerror(errno.EADDRINUSE) in rebind["error"]
    assert len(ns.ss("state", "time-wait", f"( sport = :{port} )")) == 1

    rows = ns.run("ss", "-tan")
    code, findings = check_paste(tmp_path, "inuse.txt", rows + rebind["error"] + "\n")
    (found,) = with_code(findings, "time-wait-blocks-bind")
    assert code == 1
    assert (found["severity"], found["state"], found["blame"]) == (
        "WARNING",
        "TIME_WAIT",
        "local-application",
    )
    assert str(port) in found["summary"]
    # The same rows without the line: one TIME_WAIT is nothing to say.
    _, without = check_paste(tmp_path, "rows.txt", rows)
    assert with_code(without, "time-wait-blocks-bind") == []
