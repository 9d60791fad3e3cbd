"""The paste readings of issue #22, with the kernel as the oracle: the states are made for real
in network namespaces of our own, pasted as a reporter would (``ss -tanp``, ``netstat -tanp``
without timers, a listing cut with ``[very long list]``), read back by tcphealth and compared
with ``ss``.

- SYN_SENT to a backend set that does not answer: a process connects at once to three
  addresses whose SYNs the namespace's nftables drop.
- A listener that never accepts, its queue at backlog + 1, pasted from netstat (no backlog).
- FIN_WAIT2 held by a process that half-closed: with and without CLOSE_WAIT of its own (the
  relay story decides the blame), and a netstat listing of it cut short by an elision mark.
- TIME_WAIT left by a client that closes first, pasted as a per-state histogram alone
  (``netstat -tan | awk ... | sort | uniq -c``) beside the namespace's narrow port range.

Every child lives under ``timeout`` and is killed by its handle and waited for, and every
namespace deleted, whatever happens. Needs root, ip (iproute2), ss, netstat and nft.
"""

# ruff: noqa: E501 -- child scripts and rows are kept as they run

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Finding
from tcphealth.sources import collect_live
from tcphealth.sources.text.paste import read_paste
from tests.live_netns import Namespace, check_paste, hear, lab_marks, namespaces, until, with_code

pytestmark = lab_marks("ip", "ss", "netstat", "nft")


@pytest.fixture
def netns() -> Iterator[Callable[[str], Namespace]]:
    yield from namespaces()


def live_codes(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


# --- SYN_SENT to a backend set that does not answer ------------------------------------------------

DROP_SYNS_TO_9100 = """
table inet thlab {
  chain output {
    type filter hook output priority 0
    tcp dport 9100 drop
  }
}
"""

SCRAPER = """
import json, os, socket, sys
held = []
for address in ["127.0.0.2", "127.0.0.3", "127.0.0.4"]:
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((address, 9100))
    held.append(s)
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
"""


def test_attempts_to_a_silent_backend_set_pasted_without_timers_warn(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("bset")
    # The namespace's own firewall drops every SYN to port 9100: nothing answers, not even a
    # reset, as behind a security group that drops.
    ns.nft(DROP_SYNS_TO_9100)
    pid = hear(ns.start(SCRAPER))["pid"]
    until(lambda: len(ns.run("ss", "-Htn", "state", "syn-sent").splitlines()) == 3)

    paste = ns.run("ss", "-tanp")  # no -o: no timers, no retransmit counts
    code, findings = check_paste(tmp_path, "ss.txt", paste)
    (found,) = with_code(findings, "syn-sent-backend-set")
    assert code == 1
    assert (found["severity"], found["blame"], found["pid"], found["count"]) == (
        "WARNING",
        "network",
        pid,
        len(ns.run("ss", "-Htn", "state", "syn-sent").splitlines()),
    )
    for address in ("127.0.0.2:9100", "127.0.0.3:9100", "127.0.0.4:9100"):
        assert address in found["summary"]
    # netstat's paste of the same sockets says the same
    _, from_netstat = check_paste(tmp_path, "netstat.txt", ns.run("netstat", "-tanp"))
    assert [f["pid"] for f in with_code(from_netstat, "syn-sent-backend-set")] == [pid]

    # A live look has the retransmit counts: the attempts are judged by them, not by the set.
    live = diagnose(ns.look())
    assert live_codes(live, "syn-sent-backend-set") == []


# --- a queue at backlog + 1, pasted from netstat ---------------------------------------------------

NEVER_ACCEPTS = """
import json, os, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
port = listener.getsockname()[1]
clients = []
for _ in range(130):  # one more than the queue holds: its SYN is dropped
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    clients.append(c)
print(json.dumps({"pid": os.getpid(), "port": port}), flush=True)
sys.stdin.readline()
"""


def test_a_netstat_listener_at_a_usual_backlog_plus_one_is_full_at_that_backlog(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("blog")
    child = hear(ns.start(NEVER_ACCEPTS))
    port = child["port"]

    def listener_row() -> list[str]:
        rows = ns.run("ss", "-Hltn", f"( sport = :{port} )").split()
        return rows

    until(lambda: listener_row()[1:3] == ["129", "128"])  # Recv-Q 129 of backlog 128 (Send-Q)

    paste = ns.run("netstat", "-tanp")  # netstat shows the queue, never the backlog
    code, findings = check_paste(tmp_path, "netstat.txt", paste)
    full = [f for f in with_code(findings, "listen-queue-full") if f["count"] == 129]
    assert code == 2
    (finding,) = full
    assert (finding["severity"], finding["blame"], finding["pid"]) == (
        "CRITICAL",
        "local-application",
        child["pid"],
    )
    assumed = {e["name"]: e["value"] for e in finding["evidence"]}["assumed_backlog"]
    assert assumed == int(listener_row()[2])  # the backlog ss shows is the one assumed


def test_an_ss_listener_pasted_with_its_port_hidden_and_peer_column_cut_is_still_full(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    """As slskd#1800 was pasted: ss -ltn's header and row without the Peer column, the port
    replaced by a placeholder, indented as a markdown list item. The queue and backlog are the
    ones ss shows; only the port is unknown, and the finding says so."""
    ns = netns("hide")
    child = hear(ns.start(NEVER_ACCEPTS))
    port = child["port"]

    def listener_row() -> list[str]:
        return ns.run("ss", "-Hltn", f"( sport = :{port} )").split()

    until(lambda: listener_row()[1:3] == ["129", "128"])
    state, recv_q, send_q, local = listener_row()[:4]
    host = local.rpartition(":")[0]
    paste = (
        "  State   Recv-Q  Send-Q  Local Address:Port\n"
        f"  {state}  {recv_q}    {send_q}    {host}:<listen_port>\n"
    )
    code, findings = check_paste(tmp_path, "ss-hidden-port.txt", paste)
    assert code == 2
    (finding,) = with_code(findings, "listen-queue-full")
    assert (finding["severity"], finding["blame"], finding["count"]) == (
        "CRITICAL",
        "local-application",
        int(recv_q),
    )
    evidence = {e["name"]: e["value"] for e in finding["evidence"]}
    assert (evidence["accept_queue"], evidence["listen_backlog"]) == (int(recv_q), int(send_q))
    assert any("which port it listens on" in u for u in finding["unchecked"])

    # Near miss: the same edit on a listener that accepts everything is no finding.
    calm = paste.replace(f"  {recv_q}    ", "  0    ", 1)
    assert check_paste(tmp_path, "ss-hidden-port-calm.txt", calm) == (0, [])


# --- FIN_WAIT2 held by a process that half-closed ---------------------------------------------------

BACKEND = """
import json, os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(64)
print(json.dumps({"pid": os.getpid(), "port": server.getsockname()[1]}), flush=True)
kept = []
server.settimeout(15)
while len(kept) < 12:  # accepts and keeps its side open: it never closes
    kept.append(server.accept()[0])
sys.stdin.readline()
"""

HALF_CLOSER = """
import json, os, socket, sys
backend, relay = int(sys.argv[1]), sys.argv[2] == "relay"
kept = []
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
for _ in range(12):
    s = socket.create_connection(("127.0.0.1", backend))
    s.shutdown(socket.SHUT_WR)  # half-close and keep the descriptor: FIN_WAIT2, no timer
    kept.append(s)
if relay:  # clients that close toward it: its own CLOSE_WAIT, never closed
    for _ in range(12):
        c = socket.create_connection(listener.getsockname())
        kept.append(listener.accept()[0])
        c.close()
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
"""


def _half_closer(ns: Namespace, relay: bool) -> int:
    backend = hear(ns.start(BACKEND))
    script = HALF_CLOSER.replace(
        'int(sys.argv[1]), sys.argv[2] == "relay"', f"{backend['port']}, {relay}"
    )
    pid: int = hear(ns.start(script))["pid"]
    until(lambda: held_by(ns, pid, "fin-wait-2") == 12)
    if relay:
        until(lambda: held_by(ns, pid, "close-wait") == 12)
    return pid


def held_by(ns: Namespace, pid: int, state: str) -> int:
    """How many sockets in ``state`` ss shows ``pid`` holding."""
    return ns.run("ss", "-Htnp", "state", state).count(f"pid={pid},")


@pytest.mark.parametrize("relay", [False, True], ids=["half-close-only", "relay"])
def test_held_fin_wait2_blame_follows_whether_the_holder_also_keeps_close_wait(
    netns: Callable[[str], Namespace], relay: bool
) -> None:
    ns = netns("fw2r" if relay else "fw2")
    pid = _half_closer(ns, relay)
    findings = diagnose(collect_live("netlink", netns=ns.name, with_processes=True))
    (held,) = [f for f in live_codes(findings, "fin-wait2-held") if pid in f.subject.pids[:1]]
    assert held.count == held_by(ns, pid, "fin-wait-2") == 12
    story = {item.name: item.value for item in held.evidence}["close_wait_same_holder"]
    # The backend that never closes its end is a process in this namespace as well: the
    # finding names it, and a process on this host is a local application to fix either way.
    evidence = {item.name: str(item.value) for item in held.evidence}
    backend = ns.run("ss", "-Htnp", "state", "close-wait").split("pid=")
    assert evidence["local_peer"].startswith("pid ") and any(
        part.startswith(evidence["local_peer"].split()[1] + ",") for part in backend[1:]
    )
    assert held.blame is Blame.LOCAL_APPLICATION
    assert story == (12 if relay else 0)


def test_a_netstat_listing_of_held_fin_wait2_cut_short_is_a_floor_that_warns(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("fw2cut")
    pid = _half_closer(ns, relay=False)
    rows = [
        line
        for line in ns.run("netstat", "-tanpo").splitlines()
        if "FIN_WAIT2" in line and f" {pid}/" in line
    ]
    assert len(rows) == 12
    header = "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name     Timer"
    shown = [*rows[:2], "[very long list]", *rows[-2:]]  # as the reporter of node#3613 cut it
    code, findings = check_paste(tmp_path, "cut.txt", "\n".join([header, *shown]) + "\n")
    (held,) = with_code(findings, "fin-wait2-held")
    assert code == 1
    assert (held["severity"], held["pid"], held["count"]) == ("WARNING", pid, 4)
    assert "at least 4" in held["summary"]  # a floor under the 12 ss counts
    # the same four rows without the mark: below the threshold, no claim
    _, uncut = check_paste(tmp_path, "uncut.txt", "\n".join([header, *rows[:2], *rows[-2:]]) + "\n")
    assert with_code(uncut, "fin-wait2-held") == []
    # and the whole listing: the rule's own threshold, as ss counts them
    _, whole = check_paste(tmp_path, "whole.txt", "\n".join([header, *rows]) + "\n")
    assert [f["count"] for f in with_code(whole, "fin-wait2-held")] == [12]


# --- TIME_WAIT pasted as a histogram alone ----------------------------------------------------------

CLOSES_FIRST = """
import json, os, socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 8139))
listener.listen(64)
for _ in range(12):
    client = socket.create_connection(("127.0.0.1", 8139))
    server, _ = listener.accept()
    client.close()  # the client closes first: its end waits in TIME_WAIT
    server.recv(1)
    server.close()
print(json.dumps({"pid": os.getpid()}), flush=True)
sys.stdin.readline()
"""


def test_time_wait_pasted_as_a_histogram_alone_is_counted_against_the_port_range(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    ns = netns("twhist")
    ns.sysctl(**{"net.ipv4.ip_local_port_range": "40000 40019"})  # twenty ephemeral ports
    hear(ns.start(CLOSES_FIRST))
    until(lambda: len(ns.ss("state", "time-wait", "( dport = :8139 )")) == 12)

    # as fasthttp#534's reporter pasted it: the command, its histogram, nothing else
    command = "netstat -tan | awk '$5 ~ /:8139/ {print $6}' | sort | uniq -c | sort -n"
    histogram = ns.run("sh", "-c", command)
    port_range = ns.run("sysctl", "net.ipv4.ip_local_port_range")
    code, findings = check_paste(tmp_path, "hist.txt", f"{command}\n{histogram}{port_range}")
    (counted,) = with_code(findings, "time-wait-counted")
    assert code == 1
    # the count is ss's; 12 of 20 ports is past the warning share (0.5), not the critical one
    assert (counted["severity"], counted["count"]) == (
        "WARNING",
        len(ns.ss("state", "time-wait", "( dport = :8139 )")),
    )
    assert "40000-40019" in json.dumps(counted["evidence"])
    # the same histogram printed beside the listing it summarises is not judged as a count
    listing = ns.run("netstat", "-tan")
    _, beside = check_paste(tmp_path, "beside.txt", f"{command}\n{histogram}{listing}")
    assert with_code(beside, "time-wait-counted") == []


# --- a sample of rows beside the paste's own count of them -------------------------------------------


@pytest.mark.parametrize(
    ("state", "ss_state", "counted", "few", "cut"),
    [
        (
            "CLOSE_WAIT",
            "CLOSE-WAIT",
            "close-wait-counted",
            "close-wait-age-decides",
            ("close-wait-age-decides", "INFO"),
        ),
        # held FIN_WAIT2 rows of a cut listing are a floor that warns (closing.py)
        (
            "FIN_WAIT2",
            "FIN-WAIT-2",
            "fin-wait2-counted",
            "fin-wait2-age-decides",
            ("fin-wait2-held", "WARNING"),
        ),
    ],
)
def test_rows_shown_beside_their_own_count_get_one_finding_about_the_count(
    netns: Callable[[str], Namespace],
    tmp_path: Path,
    state: str,
    ss_state: str,
    counted: str,
    few: str,
    cut: tuple[str, str],
) -> None:
    """``ss -tanp | grep STATE | head -3`` and then ``grep -c`` of the same: the three rows are
    a sample of the twelve counted. One finding about the twelve, not a second one saying
    that three are "below the 10 that warn" beside it."""
    ns = netns("sample" + state[:2].lower())
    pid = _half_closer(ns, relay=True)
    rows = [
        line
        for line in ns.run("ss", "-tanp").splitlines()
        if line.startswith(ss_state + " ") and f"pid={pid}," in line
    ]
    assert len(rows) == held_by(ns, pid, ss_state.lower()) == 12
    prompt = f"root@web1:~# ss -tanp | grep {ss_state} | grep"
    paste = "\n".join(
        [f"{prompt} pid={pid}, | head -3", *rows[:3], f"{prompt} -c pid={pid},", "12"]
    )
    code, findings = check_paste(tmp_path, "sample.txt", paste + "\n")
    assert code == 1
    # The cut listing is said (an INFO: its rows are a sample), and the pile is judged once.
    assert [(f["code"], f["severity"], f["pid"], f["count"]) for f in findings] == [
        (counted, "WARNING", pid, 12),
        ("listing-elided", "INFO", pid, 3),
    ]
    assert with_code(findings, few) == []
    # A count is one moment: it shows the pile, not that it was never to be closed.
    assert "never" not in with_code(findings, counted)[0]["summary"]
    # The three rows alone, with no count: `head -3` printed exactly three, so the listing
    # was cut there -- the rows are a sample of more, said so, and their number a floor.
    _, alone = check_paste(
        tmp_path, "alone.txt", "\n".join([f"{prompt} pid={pid}, | head -3", *rows[:3]]) + "\n"
    )
    assert [(f["code"], f["severity"], f["pid"], f["count"]) for f in alone] == [
        (cut[0], cut[1], pid, 3),
        ("listing-elided", "INFO", pid, 3),
    ]
    # `head -4` printed three: nothing was cut, and nothing says it was.
    _, whole = check_paste(
        tmp_path, "whole.txt", "\n".join([f"{prompt} pid={pid}, | head -4", *rows[:3]]) + "\n"
    )
    assert [(f["code"], f["pid"], f["count"]) for f in whole] == [(few, pid, 3)]


@pytest.mark.skipif(shutil.which("lsof") is None, reason="needs lsof")
def test_a_real_lsof_listing_says_it_comes_from_linux_and_agrees_with_ss(
    netns: Callable[[str], Namespace], tmp_path: Path
) -> None:
    """lsof's own format names no platform; its DEVICE column (a socket's inode, in decimal,
    on Linux) does, so the next steps are Linux's without a mark."""
    ns = netns("lsofplat")
    pid = _half_closer(ns, relay=True)
    listing = ns.run("lsof", "-nP", "-a", "-p", str(pid), "-iTCP")
    (snapshot,) = read_paste(listing.splitlines(), "lsof.txt")
    assert snapshot.host.platform == "linux"
    states = Counter(sock.state.value for sock in snapshot.sockets)
    assert (
        (states["FIN_WAIT2"], states["CLOSE_WAIT"])
        == (
            held_by(ns, pid, "fin-wait-2"),
            held_by(ns, pid, "close-wait"),
        )
        == (12, 12)
    )
    findings = diagnose(snapshot)
    (held,) = live_codes(findings, "close-wait-held")
    assert held.subject.pids == (pid,) and held.next_steps[0].startswith(
        "ss -tnpo state close-wait"
    )
    assert not any("a Linux command" in step for f in findings for step in f.next_steps)
