"""Readings an expert gives a real paste where the rows alone are below every threshold (issue
#22): lsof's descriptor numbers against /proc/PID/limits, a repeated summary that hit
tcp_max_tw_buckets earlier, elision marks that make a listing partial, one story for FIN_WAIT2
blame, a LISTEN Recv-Q of a usual backlog + 1, and SYN_SENT to a whole backend set without
timers. Each text is in the shape of a paste of fixtures/realworld/; each test also checks
the near miss that must not give the finding."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Elision, Finding, Severity, Snapshot, TcpState
from tcphealth.sources.snapshot_file import snapshot_from_json, snapshot_to_json
from tests.pastes import last


def found(snapshot: Snapshot, code: str) -> list[Finding]:
    return [finding for finding in diagnose(snapshot) if finding.code == code]


def evidence(finding: Finding) -> dict[str, object]:
    return {item.name: item.value for item in finding.evidence}


# --- lsof's FD column: a floor on the descriptors open ------------------------------------------

LSOF = """\
root@prometheus-prod:~# lsof -p 22347
COMMAND     PID USER   FD      TYPE             DEVICE  SIZE/OFF      NODE NAME
prometheu 22347 root  cwd       DIR              202,1      4096         2 /
prometheu 22347 root  mem       REG             202,80 536866986  38010889 /mnt/prometheus/chunks/000006
...
prometheu 22347 root    9u     IPv4         2043846185       0t0       TCP ip-172-31-4-6:39694->ip-172-31-4-131:9100 (SYN_SENT)
prometheu 22347 root {fd}r      REG             202,80 431018685  38010890 /mnt/prometheus/chunks/000007
root@prometheus-prod:~# cat /proc/{limits_pid}/limits
Limit                     Soft Limit           Hard Limit           Units
Max open files            1024                 4096                 files
root@prometheus-prod:~# netstat -antp
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name
tcp        0      1 172.31.4.6:54124        172.31.4.14:9100        SYN_SENT    22347/prometheus
"""


def test_the_highest_lsof_descriptor_near_the_soft_limit_is_a_floor_on_its_use() -> None:
    snapshot = last(LSOF.format(fd=1014, limits_pid=22347))
    (process,) = [p for p in snapshot.processes if p.pid == 22347]
    assert (process.open_fds, process.highest_fd, process.fd_soft_limit) == (None, 1014, 1024)
    (finding,) = found(snapshot, "fd-limit-near")
    assert (finding.severity, finding.blame, finding.subject.pids) == (
        Severity.CRITICAL,
        Blame.LOCAL_APPLICATION,
        (22347,),
    )
    assert "had at least 1,015 of its 1,024" in finding.summary
    assert evidence(finding)["highest_fd"] == 1014
    assert "open_fds" not in evidence(finding)  # the count is not known, only its floor
    assert any("ls /proc/22347/fd | wc -l" in item for item in finding.unchecked)


def test_a_low_descriptor_number_or_another_pids_limit_says_nothing() -> None:
    assert found(last(LSOF.format(fd=14, limits_pid=22347)), "fd-limit-near") == []
    # the limits of pid 15902 say nothing about pid 22347's descriptors
    assert found(last(LSOF.format(fd=1014, limits_pid=15902)), "fd-limit-near") == []


def test_the_floor_survives_a_snapshot_round_trip() -> None:
    snapshot = last(LSOF.format(fd=1014, limits_pid=22347))
    again = snapshot_from_json(snapshot_to_json(snapshot), "again")
    assert again.processes == snapshot.processes


# --- a repeated summary that reached tcp_max_tw_buckets -----------------------------------------

HISTOGRAM = """\
root@ip-172-31-3-170:~# netstat -n | awk '/^tcp/ {{++S[$NF]}} END {{for(a in S) print a, S[a]}}'
ESTABLISHED 268
TIME_WAIT {first}
root@ip-172-31-3-170:~# netstat -n | awk '/^tcp/ {{++S[$NF]}} END {{for(a in S) print a, S[a]}}'
ESTABLISHED 274
TIME_WAIT 56889
root@ip-172-31-3-170:~# sysctl net.ipv4.tcp_max_tw_buckets
net.ipv4.tcp_max_tw_buckets = 65536
"""


def test_a_ceiling_reached_in_an_earlier_count_of_the_same_summary_is_critical() -> None:
    snapshot = last(HISTOGRAM.format(first=65536))
    assert snapshot.state_counts["TIME_WAIT"] == 56889
    assert snapshot.earlier_state_counts == {"ESTABLISHED": (268,), "TIME_WAIT": (65536,)}
    (finding,) = found(snapshot, "time-wait-bucket-limit")
    assert (finding.severity, finding.blame) == (Severity.CRITICAL, Blame.KERNEL_LIMIT)
    assert "reached the ceiling in 1 of the 1 earlier counts" in finding.summary
    assert evidence(finding)["time_wait_earlier"] == "65536"


def test_below_the_ceiling_in_every_count_it_stays_a_warning() -> None:
    (finding,) = found(last(HISTOGRAM.format(first=60000)), "time-wait-bucket-limit")
    assert finding.severity is Severity.WARNING
    assert "time_wait_earlier" not in evidence(finding)


# --- elision marks ---------------------------------------------------------------------------

NODE = """\
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name Timer
tcp        0      0 XX.XX.XX.XX:80       XX.XX.XX.XX:17863      FIN_WAIT2   26375/node       off (0.00/0/0)
tcp        0      0 XX.XX.XX.XX:80       XX.XX.XX.XX:17832      FIN_WAIT2   26375/node       off (0.00/0/0)
{mark}
tcp        0      0 XX.XX.XX.XX:80       XX.XX.XX.XX:17992      FIN_WAIT2   26375/node       off (0.00/0/0)
tcp        0      0 XX.XX.XX.XX:80       XX.XX.XX.XX:17851      FIN_WAIT2   26375/node       off (0.00/0/0)
"""


def test_elision_marks_are_read_with_the_rows_beside_them() -> None:
    for mark in ("[very long list]", "...", "…", "<snip>", "(snip)", "[...]", "[200 more lines]"):
        snapshot = last(NODE.format(mark=mark))
        assert snapshot.elisions == (Elision(mark, (TcpState.FIN_WAIT2,), (26375,)),), mark
    # a Windows netstat -b process name is not an elision
    assert last(NODE.format(mark=" [svchost.exe]")).elisions == ()


MIXED = """\
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name Timer
tcp        0      0 10.0.0.1:80          10.0.0.2:17863         FIN_WAIT2   26375/node       off (0.00/0/0)
{first}
tcp        0      0 10.0.0.1:5432        10.0.0.3:41000         CLOSE_WAIT  4120/postgres    off (0.00/0/0)
{last}
"""


def test_an_elision_takes_the_row_after_it_as_it_arrives_not_from_the_kept_rows() -> None:
    # The rows are let go before the snapshot is built: the row after the mark is taken when
    # it is read, so both neighbours' states and holders are named.
    snapshot = last(MIXED.format(first="...", last=""))
    assert snapshot.elisions == (
        Elision("...", (TcpState.FIN_WAIT2, TcpState.CLOSE_WAIT), (4120, 26375)),
    )
    # two marks with no row between: both stand beside the same two rows
    both = last(MIXED.format(first="...\n[snip]", last=""))
    assert both.elisions == (
        Elision("...", (TcpState.FIN_WAIT2, TcpState.CLOSE_WAIT), (4120, 26375)),
        Elision("[snip]", (TcpState.FIN_WAIT2, TcpState.CLOSE_WAIT), (4120, 26375)),
    )
    # a mark after the last row has only the row before it
    tail = last(MIXED.format(first="", last="<snip>"))
    assert tail.elisions == (Elision("<snip>", (TcpState.CLOSE_WAIT,), (4120,)),)


def test_held_fin_wait2_beside_an_elision_is_a_floor_and_warns() -> None:
    snapshot = last(NODE.format(mark="[very long list]"))
    (held,) = found(snapshot, "fin-wait2-held")
    assert (held.severity, held.blame, held.subject.pids, held.count) == (
        Severity.WARNING,
        Blame.REMOTE_PEER,
        (26375,),
        4,
    )
    assert "holds at least 4 connections" in held.summary
    assert "XX.XX.XX.XX (4)" in held.summary  # the masked host as the paste wrote it
    assert evidence(held)["elided"] == "[very long list]"
    assert any(item.startswith("how many there are") for item in held.unchecked)
    # the same four rows without the mark: four held FIN_WAIT2 are below the threshold
    assert found(last(NODE.format(mark="")), "fin-wait2-held") == []


def test_a_partial_listing_never_calls_its_processes_nothing_wrong(tmp_path: Path) -> None:
    apodini = """\
COMMAND    PID   USER   FD   TYPE             DEVICE SIZE/OFF NODE NAME
homed      485 moritz   19u  IPv4 0x23e9f3ae8e5d0c5f      0t0  TCP fitz.haus:49182->hue.haus:8080 (ESTABLISHED)
...
"""
    snapshot = last(apodini)
    (elided,) = found(snapshot, "listing-elided")
    assert (elided.severity, elided.subject.pids, elided.state, elided.count) == (
        Severity.INFO,
        (485,),
        TcpState.ESTABLISHED,
        1,
    )
    path = tmp_path / "apodini.txt"
    path.write_text(apodini, encoding="utf-8")
    checked = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert checked.exit_code == 0  # an INFO: a cut listing is not itself a problem
    table = CliRunner().invoke(main, ["--format", "table", "--from", str(path), "--no-pager"])
    assert table.exit_code == 0
    # before: "1 process with nothing wrong holds 1 socket: homed (pid 485)"
    assert "nothing wrong" not in table.stdout
    assert "pid 485 homed  1 socket  INFO listing-elided" in table.stdout


# --- FIN_WAIT2: one story for both rules ---------------------------------------------------------

RELAY_ROW = (
    "tcp        0      0 10.0.0.1:{port}        10.0.0.9:{peer}        {state}   500/proxy\n"
)
HEADER = "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n"


def _relay_paste(close_waits: int) -> str:
    rows = [RELAY_ROW.format(port=40000 + i, peer=8080, state="FIN_WAIT2") for i in range(12)]
    rows += [
        RELAY_ROW.format(port=3128, peer=50000 + i, state="CLOSE_WAIT") for i in range(close_waits)
    ]
    return HEADER + "".join(rows)


def test_a_holder_that_also_keeps_close_wait_relays_a_half_close_and_is_to_blame() -> None:
    (held,) = found(last(_relay_paste(close_waits=3)), "fin-wait2-held")
    assert (held.blame, evidence(held)["close_wait_same_holder"]) == (Blame.LOCAL_APPLICATION, 3)
    assert "closes neither side" in held.summary
    (alone,) = found(last(_relay_paste(close_waits=0)), "fin-wait2-held")
    assert (alone.blame, evidence(alone)["close_wait_same_holder"]) == (Blame.REMOTE_PEER, 0)


def test_counted_fin_wait2_tells_the_same_story() -> None:
    saved = "u@h:~$ sudo netstat -np | grep kube-proxy > netstat.txt\nu@h:~$ grep FIN_WAIT2 netstat.txt | wc -l\n14544\n"
    both = saved + "u@h:~$ grep CLOSE_WAIT netstat.txt | wc -l\n977\n"
    (counted,) = found(last(both), "fin-wait2-counted")
    assert (counted.severity, counted.blame) == (Severity.CRITICAL, Blame.LOCAL_APPLICATION)
    assert evidence(counted)["close_wait_same_holder"] == 977
    (alone,) = found(last(saved), "fin-wait2-counted")
    assert (alone.severity, alone.blame) == (Severity.CRITICAL, Blame.REMOTE_PEER)
    assert evidence(alone)["close_wait_same_holder"] == 0


def test_a_host_wide_count_of_fin_wait2_does_not_say_the_peers_never_close() -> None:
    # A count has no age: before, it said "peers that never send their FIN", which the held
    # finding says only once the wait outlasts stuck_seconds.
    (counted,) = found(last("$ netstat -an | grep -c FIN_WAIT2\n20000\n"), "fin-wait2-counted")
    assert counted.blame is Blame.REMOTE_PEER
    assert "never" not in counted.summary
    assert "their peers have not sent their FIN yet, and a count does not say for how long" in (
        counted.summary
    )


# --- a LISTEN Recv-Q of a usual backlog + 1 -----------------------------------------------------

LISTENER = HEADER + (
    "tcp      {queued}      0 0.0.0.0:8080            0.0.0.0:*               LISTEN      1234/java\n"
)


def test_a_queue_of_a_usual_backlog_plus_one_is_full_at_an_assumed_backlog() -> None:
    for queued, backlog in ((129, 128), (512, 511), (513, 512), (4097, 4096)):
        (full,) = found(last(LISTENER.format(queued=queued)), "listen-queue-full")
        assert (full.severity, full.blame, full.subject.pids) == (
            Severity.CRITICAL,
            Blame.LOCAL_APPLICATION,
            (1234,),
        )
        assert evidence(full)["assumed_backlog"] == backlog
        assert "The backlog is assumed" in full.summary
        assert any("ss -ltn shows it as Send-Q" in item for item in full.unchecked)


def test_any_other_queue_without_a_backlog_stays_unknown() -> None:
    snapshot = last(LISTENER.format(queued=130))
    assert found(snapshot, "listen-queue-full") == []
    assert [f.severity for f in found(snapshot, "listen-backlog-unknown")] == [Severity.INFO]


def test_a_somaxconn_below_the_assumed_backlog_rules_the_assumption_out() -> None:
    # somaxconn 64 caps every backlog: 129 queued is then over any possible backlog, which the
    # bound already proves full; the assumption of 128 is not made.
    snapshot = last(LISTENER.format(queued=129) + "net.core.somaxconn = 64\n")
    (full,) = found(snapshot, "listen-queue-full")
    assert "assumed_backlog" not in evidence(full)


def test_ss_with_the_backlog_shown_is_read_as_it_is() -> None:
    ss = 'State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\nLISTEN 129    128    0.0.0.0:8080       0.0.0.0:*         users:(("java",pid=1234,fd=5))\n'
    (full,) = found(last(ss), "listen-queue-full")
    assert "assumed_backlog" not in evidence(full)
    assert evidence(full)["listen_backlog"] == 128


# --- SYN_SENT to a whole backend set, without timers ---------------------------------------------

SYN_ROW = "tcp        0      1 172.31.4.6:{port}        {address}:9100        SYN_SENT    22347/prometheus\n"


def _scrape_paste(addresses: list[str], extra: str = "") -> str:
    rows = [SYN_ROW.format(port=54000 + i, address=a) for i, a in enumerate(addresses)]
    return HEADER + "".join(rows) + extra


def test_attempts_to_every_backend_of_a_set_at_once_warn_naming_them_and_the_process() -> None:
    backends = ["172.31.4.14", "172.31.4.131", "172.31.10.149"]
    snapshot = last(_scrape_paste(backends))
    (found_set,) = found(snapshot, "syn-sent-backend-set")
    assert (found_set.severity, found_set.blame, found_set.subject.pids, found_set.count) == (
        Severity.WARNING,
        Blame.NETWORK,
        (22347,),
        3,
    )
    for address in backends:
        assert f"{address}:9100" in found_set.summary
    assert "pid 22347 (prometheus)" in found_set.summary
    # the set's members are told once, not also as three unconfirmed attempts
    assert found(snapshot, "syn-sent-unconfirmed") == []


def test_a_set_listed_in_part_says_how_many_attempts_the_paste_counts() -> None:
    # An awk histogram above the listing counts 40 SYN_SENT; the listing shows 3 and '...'.
    histogram = "$ netstat -ant | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'\nSYN_SENT 40\nESTABLISHED 7\n"
    backends = ["172.31.4.14", "172.31.4.131", "172.31.10.149"]
    snapshot = last(histogram + _scrape_paste(backends, "...\n"))
    (found_set,) = found(snapshot, "syn-sent-backend-set")
    assert found_set.count == 3
    assert found_set.summary.endswith(
        "The paste's own count puts 40 connections in SYN_SENT; the listing shows 3."
    )
    assert evidence(found_set)["syn_sent_summary"] == 40
    # Without a count beyond the rows, nothing is said of one.
    (plain,) = found(last(_scrape_paste(backends)), "syn-sent-backend-set")
    assert "own count" not in plain.summary and "syn_sent_summary" not in evidence(plain)


def test_two_backends_or_one_connected_member_is_no_set_that_does_not_answer() -> None:
    two = last(_scrape_paste(["172.31.4.14", "172.31.4.131"]))
    assert found(two, "syn-sent-backend-set") == []
    assert len(found(two, "syn-sent-unconfirmed")) == 2
    connected = "tcp        0    198 172.31.4.6:52692        172.31.3.89:9100        ESTABLISHED 22347/prometheus\n"
    some = last(_scrape_paste(["172.31.4.14", "172.31.4.131", "172.31.10.149"], connected))
    assert found(some, "syn-sent-backend-set") == []


def test_attempts_with_retransmit_counts_are_judged_by_them_instead() -> None:
    ss = "State   Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n" + "".join(
        f'SYN-SENT 0 1 172.31.4.6:{54000 + i} {a}:9100 users:(("prometheus",pid=22347,fd={9 + i})) timer:(on,200ms,0)\n'
        for i, a in enumerate(["172.31.4.14", "172.31.4.131", "172.31.10.149"])
    )
    snapshot = last(ss)
    assert all(sock.retransmits == 0 for sock in snapshot.sockets)
    assert found(snapshot, "syn-sent-backend-set") == []


def test_an_lsof_with_a_tid_column_gives_no_descriptor_floor() -> None:
    # lsof -K: TID stands between PID and USER on thread rows only, and a USER may be a uid
    # (1000 here): the FD column cannot be told apart, so no floor is read.
    paste = """\
COMMAND     PID   TID USER   FD      TYPE             DEVICE  SIZE/OFF      NODE NAME
java      22664 23974 1000  1019u     IPv6         2043846958       0t0       TCP 10.0.0.1:443->10.0.0.9:5000 (CLOSE_WAIT)
java      22664       1000    7u     IPv6         2043846959       0t0       TCP 10.0.0.1:443->10.0.0.9:5001 (CLOSE_WAIT)
# cat /proc/22664/limits
Max open files            1024                 4096                 files
"""
    snapshot = last(paste)
    (process,) = [p for p in snapshot.processes if p.pid == 22664]
    assert (process.highest_fd, process.fd_soft_limit) == (None, 1024)
    assert found(snapshot, "fd-limit-near") == []


def test_several_workers_attempting_the_same_set_are_named_together() -> None:
    rows = "".join(
        f"tcp        0      1 10.0.0.5:{41000 + i}        10.0.1.{i + 1}:6379        SYN_SENT    {300 + i}/php-fpm\n"
        for i in range(3)
    )
    (found_set,) = found(last(HEADER + rows), "syn-sent-backend-set")
    assert found_set.subject.pids == (300, 301, 302)
    assert "10.0.1.1:6379, 10.0.1.2:6379, 10.0.1.3:6379" in found_set.summary
    # an attempt whose owner the listing does not show stays out of the set, told on its own
    unowned = (
        rows + "tcp        0      1 10.0.0.5:41009        10.0.1.4:6379        SYN_SENT    -\n"
    )
    snapshot = last(HEADER + unowned)
    assert [f.subject.pids for f in found(snapshot, "syn-sent-backend-set")] == [(300, 301, 302)]
    (alone,) = found(snapshot, "syn-sent-unconfirmed")
    assert alone.subject.endpoint == "10.0.1.4:6379"


def test_a_long_bracketed_line_is_passed_over_quickly_not_matched() -> None:
    # 256 MiB of paste may hold such lines: the elision pattern is tried on short lines only.
    line = "[" + "more " * 200_000
    snapshot = last(NODE.format(mark=line))
    assert snapshot.elisions == ()
    assert len(snapshot.sockets) == 4
