"""The limits around the states (issue #25) without a kernel to push: host-wide limits read from
recorded /proc files, the same read from pasted text, and the rules' edges (what they leave to
other rules, what they cannot know). The kernel-as-oracle tests are in test_live_limits.py."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tcphealth.bounds import U32_MAX
from tcphealth.diagnose import diagnose
from tcphealth.diagnose.series import diagnose_series
from tcphealth.model import Finding, Severity, Snapshot, Sysctls, TcpInfo, TimerKind
from tcphealth.sources import procfs
from tcphealth.sources.text import read_text
from tcphealth.states import retransmission_budget, stalled_seconds_left, syn_queue_capacity
from tests.builders import listener, many, process, snapshot, sock

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "proc-limits" / "recorded"


def codes(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.code: finding for finding in findings}


def evidence(finding: Finding) -> dict[str, Any]:
    return {item.name: item.value for item in finding.evidence}


def from_tree(root: Path) -> Snapshot:
    return snapshot(sysctls=procfs.read_sysctls(root), counters=procfs.read_counters(root))


# --- recorded /proc files -----------------------------------------------------------------------


def test_the_recorded_files_are_there() -> None:
    # A missing fixture must fail here, not pass below as "no finding".
    for name in ("net/sockstat", "net/netstat", "sys/net/ipv4/tcp_mem"):
        assert (RECORDED / name).is_file(), name


def test_recorded_files_read_as_the_kernel_wrote_them() -> None:
    snap = from_tree(RECORDED)
    assert snap.sysctls.tcp_mem == (287907, 383878, 575814)
    assert snap.sysctls.tcp_max_orphans == 131072
    assert snap.sysctls.tcp_max_syn_backlog == 2048
    assert snap.sysctls.ip_local_reserved_ports == ()  # the file holds only a newline
    assert snap.sysctls.nf_conntrack_max == 262144
    assert snap.counters["conntrack.count"] == 0
    assert snap.counters["sockstat.TCP.orphan"] == 176
    assert snap.counters["sockstat.TCP.mem"] == 281
    assert "TcpExt.TCPReqQFullDoCookies" in snap.counters
    # Well inside every limit: nothing to say.
    limit_codes = {"orphans-near-limit", "tcp-memory-pressure", "conntrack-table-full"}
    assert not limit_codes & set(codes(diagnose(snap)))


def test_recorded_files_raised_to_the_limits(tmp_path: Path) -> None:
    """The recording with three numbers changed (and only those) to reach the limits."""
    root = tmp_path / "proc"
    shutil.copytree(RECORDED, root)
    sockstat = (root / "net/sockstat").read_text()
    assert "orphan 176 " in sockstat and "mem 281\n" in sockstat
    sockstat = sockstat.replace("orphan 176 ", "orphan 131072 ").replace(
        "mem 281\n", "mem 390000\n"
    )
    (root / "net/sockstat").write_text(sockstat)
    (root / "sys/net/netfilter/nf_conntrack_count").write_text("220000\n")

    found = codes(diagnose(from_tree(root)))
    orphans = found["orphans-near-limit"]
    assert orphans.severity is Severity.CRITICAL
    assert orphans.count == 131072
    assert "the kernel is resetting orphans" in orphans.summary
    memory = found["tcp-memory-pressure"]
    assert memory.severity is Severity.WARNING  # past pressure (383,878), under high (575,814)
    assert evidence(memory)["tcp_mem"] == "287907 383878 575814"
    conntrack = found["conntrack-table-full"]
    assert conntrack.severity is Severity.WARNING  # 220,000 of 262,144: 84%
    assert "84%" in conntrack.summary
    assert any("other network namespaces" in text for text in conntrack.unchecked)


@pytest.mark.parametrize(
    ("pages", "aborts", "severity"),
    [
        (600000, None, Severity.CRITICAL),
        (390000, None, Severity.WARNING),
        (100, 37, Severity.INFO),
        (100, 0, None),
    ],
)
def test_tcp_memory_against_tcp_mem(pages: int, aborts: int | None, severity: Severity) -> None:
    counters = {"sockstat.TCP.mem": pages}
    if aborts is not None:
        counters["TcpExt.TCPAbortOnMemory"] = aborts
    snap = snapshot(sysctls=Sysctls(tcp_mem=(287907, 383878, 575814)), counters=counters)
    finding = codes(diagnose(snap)).get("tcp-memory-pressure")
    assert (finding.severity if finding else None) is severity


def test_no_limit_in_the_snapshot_means_no_limit_finding() -> None:
    snap = snapshot(counters={"sockstat.TCP.orphan": 10**6, "conntrack.count": 10**6})
    assert diagnose(snap) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080,9000-9010\n", ((8080, 8080), (9000, 9010))),
        ("\n", ()),
        ("80-70", None),
        ("http", None),
    ],
)
def test_reserved_ports_list(text: str, expected: Any) -> None:
    assert procfs.parse_port_list(text) == expected


# --- pasted text --------------------------------------------------------------------------------

PASTE = """\
$ sysctl net.ipv4.tcp_mem net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_reserved_ports
net.ipv4.tcp_mem = 188760	251683	377520
net.ipv4.tcp_max_syn_backlog = 512
net.ipv4.ip_local_reserved_ports = 8080,9000-9001
net.netfilter.nf_conntrack_max = 65536
net.netfilter.nf_conntrack_count = 65536
net.ipv4.tcp_max_orphans = 1000
$ cat /proc/net/sockstat
sockets: used 3121
TCP: inuse 1800 orphan 990 tw 300 alloc 2200 mem 260000
$ nstat -az TcpExtTCPReqQFullDoCookies
TcpExtTCPReqQFullDoCookies      420                0.0
$ netstat -s | grep -i cookies
    420 SYN cookies sent
    7 SYN cookies received
    1 invalid SYN cookies received
    TCPReqQFullDrop: 3
$ ss -tan
State  Recv-Q Send-Q Local Address:Port Peer Address:Port
LISTEN 0      511          0.0.0.0:443       0.0.0.0:*
ESTAB  0      0         10.0.0.5:443    10.0.0.9:51000
"""


def test_pasted_sysctls_counters_and_sockstat_are_read() -> None:
    (snap,) = read_text(PASTE, "paste")
    assert snap.sysctls.tcp_mem == (188760, 251683, 377520)
    assert snap.sysctls.tcp_max_syn_backlog == 512
    assert snap.sysctls.ip_local_reserved_ports == ((8080, 8080), (9000, 9001))
    assert snap.sysctls.nf_conntrack_max == 65536
    assert snap.counters["conntrack.count"] == 65536
    assert snap.counters["sockstat.TCP.orphan"] == 990
    assert snap.counters["sockstat.TCP.mem"] == 260000
    assert snap.counters["TcpExt.TCPReqQFullDoCookies"] == 420
    assert snap.counters["TcpExt.SyncookiesSent"] == 420
    assert snap.counters["TcpExt.SyncookiesRecv"] == 7
    assert snap.counters["TcpExt.SyncookiesFailed"] == 1
    assert snap.counters["TcpExt.TCPReqQFullDrop"] == 3
    found = codes(diagnose(snap))
    assert found["conntrack-table-full"].severity is Severity.CRITICAL
    assert found["orphans-near-limit"].severity is Severity.WARNING  # 990 of 1,000
    assert found["tcp-memory-pressure"].severity is Severity.WARNING
    overflowed = found["syn-queue-overflowed"]
    assert overflowed.severity is Severity.INFO
    assert "answered 420 SYNs with cookies and dropped 3 SYNs" in overflowed.summary


# --- the SYN queue ------------------------------------------------------------------------------


def syn_recv(count: int, port: int = 443) -> list[Any]:
    return many(
        count, lambda i: sock("SYN-RECV", f"10.0.0.5:{port}", f"203.0.113.{i % 200 + 1}:{i + 1024}")
    )


def test_a_syn_queue_at_its_room_is_full_and_the_handshake_rule_steps_aside() -> None:
    snap = snapshot(
        listener("0.0.0.0:443", queued=0, backlog=99, pids=(7,)),
        syn_recv(100),
        processes=[process(7, "nginx")],
        sysctls=Sysctls(tcp_syncookies=1),
    )
    found = codes(diagnose(snap))
    assert set(found) == {"syn-queue-full"}
    assert found["syn-queue-full"].severity is Severity.WARNING
    assert evidence(found["syn-queue-full"])["syn_queue_capacity"] == 100


def test_one_short_of_the_room_is_the_handshake_rule_s() -> None:
    snap = snapshot(listener("0.0.0.0:443", queued=0, backlog=99), syn_recv(99), sysctls=Sysctls())
    assert set(codes(diagnose(snap))) == {"syn-recv-no-final-ack"}


def test_without_cookies_a_full_syn_queue_drops_and_is_critical() -> None:
    snap = snapshot(
        listener("0.0.0.0:443", queued=0, backlog=4096),
        syn_recv(385),
        sysctls=Sysctls(tcp_syncookies=0, tcp_max_syn_backlog=512),
    )
    finding = codes(diagnose(snap))["syn-queue-full"]
    assert finding.severity is Severity.CRITICAL
    assert evidence(finding)["syn_queue_capacity"] == syn_queue_capacity(4096, 0, 512) == 385


def test_without_a_backlog_the_syn_queue_is_not_judged() -> None:
    snap = snapshot(listener("0.0.0.0:443", queued=0, backlog=None), syn_recv(5000))
    assert "syn-queue-full" not in codes(diagnose(snap))


def test_a_rise_in_cookies_between_samples_is_a_finding_of_the_series() -> None:
    samples = [
        replace(
            snapshot(counters={"TcpExt.TCPReqQFullDoCookies": 100 + 50 * step}),
            host=replace(snapshot().host, taken_at=10.0 * step),
        )
        for step in range(2)
    ]
    findings, _ = diagnose_series(samples)
    (rising,) = [f for f in findings if f.code == "syn-queue-overflow-rising"]
    assert rising.count == 50
    assert "answered with cookies" in rising.summary


def _memory_series(aborts: tuple[int, int], pages: tuple[int, int]) -> list[Snapshot]:
    sysctls = Sysctls(tcp_mem=(287907, 383878, 575814), tcp_max_orphans=131072)
    return [
        replace(
            snapshot(
                sysctls=sysctls,
                counters={
                    "TcpExt.TCPAbortOnMemory": aborts[step],
                    "sockstat.TCP.mem": pages[step],
                    "sockstat.TCP.orphan": 12,
                },
            ),
            host=replace(snapshot().host, taken_at=10.0 * step),
        )
        for step in range(2)
    ]


def test_aborts_for_memory_during_a_series_are_a_finding_that_replaces_ran_out_before() -> None:
    # Memory under pressure at both samples; aborts rose by 9 between them.
    findings, _ = diagnose_series(_memory_series((37, 46), (1000, 1200)))
    found = codes(findings)
    rising = found["tcp-memory-aborts-rising"]
    assert (rising.severity, rising.count) == (Severity.CRITICAL, 9)
    assert evidence(rising)["TCPAbortOnMemory"] == "+9"
    assert evidence(rising)["orphans"] == 12
    assert "the memory between the samples" in rising.unchecked[0]
    # The single look alone says "ran out before" (INFO); the series says it is happening.
    assert found.get("tcp-memory-pressure") is None
    alone = codes(diagnose(_memory_series((37, 46), (1000, 1200))[-1]))
    assert alone["tcp-memory-pressure"].severity is Severity.INFO


def test_aborts_rising_keeps_a_pressure_finding_and_no_rise_makes_none() -> None:
    found = codes(diagnose_series(_memory_series((37, 40), (390000, 400000)))[0])
    assert found["tcp-memory-pressure"].severity is Severity.WARNING
    assert found["tcp-memory-aborts-rising"].count == 3
    steady = codes(diagnose_series(_memory_series((37, 37), (390000, 400000)))[0])
    assert "tcp-memory-aborts-rising" not in steady
    assert steady["tcp-memory-pressure"].severity is Severity.WARNING


# --- ephemeral ports ----------------------------------------------------------------------------

NARROW = Sysctls(ip_local_port_range=(40000, 40019), ip_local_reserved_ports=((40010, 40014),))


def outgoing(ports: range, state: str = "ESTAB", remote: str = "10.9.9.9:5432") -> list[Any]:
    return [sock(state, f"10.0.0.5:{port}", remote, pids=(30,)) for port in ports]


def test_every_state_holds_a_port_and_reserved_ports_are_not_counted() -> None:
    # 20 ports, 5 reserved: 15 usable; 12 ESTABLISHED and 2 SYN_SENT hold 14 of them.
    snap = snapshot(
        outgoing(range(40000, 40010)),
        outgoing(range(40015, 40017)),
        outgoing(range(40017, 40019), "SYN-SENT"),
        processes=[process(30, "etl")],
        sysctls=NARROW,
    )
    finding = codes(diagnose(snap))["ephemeral-ports-exhausting"]
    assert finding.severity is Severity.WARNING  # 14 / 15 = 93%, under 95%
    assert (finding.count, evidence(finding)["ports_usable"]) == (14, 15)
    assert "1 port is left; the connect() after 1 more fails" in finding.summary
    assert finding.subject.pids == (30,)


def test_ports_held_by_no_named_process_start_the_sentence_with_the_host() -> None:
    # Before: "this host holds 14 connections ..." -- a summary beginning in lower case.
    snap = snapshot(
        [sock("ESTAB", f"10.0.0.5:{port}", "10.9.9.9:5432") for port in range(40000, 40010)],
        [sock("ESTAB", f"10.0.0.5:{port}", "10.9.9.9:5432") for port in range(40015, 40019)],
        sysctls=NARROW,
    )
    finding = codes(diagnose(snap))["ephemeral-ports-exhausting"]
    assert finding.subject.pids == ()
    assert finding.summary.startswith("This host holds 14 connections from 10.0.0.5 to ")


def test_a_socket_on_a_reserved_or_listening_port_is_not_an_outgoing_one() -> None:
    snap = snapshot(
        listener("10.0.0.5:40001"),
        [sock("ESTAB", "10.0.0.5:40001", f"10.9.9.9:{5000 + i}") for i in range(15)],
        outgoing(range(40010, 40015)),  # reserved: bound explicitly, not handed out
        sysctls=NARROW,
    )
    assert "ephemeral-ports-exhausting" not in codes(diagnose(snap))


def test_time_wait_alone_is_left_to_the_time_wait_rule() -> None:
    snap = snapshot(outgoing(range(40000, 40015), "TIME-WAIT"), sysctls=NARROW)
    found = codes(diagnose(snap))
    assert "ephemeral-ports-exhausting" not in found
    assert "time-wait-ports-exhausting" in found


# --- when a stalled connection ends --------------------------------------------------------------


def test_a_stalled_connection_is_given_the_time_the_kernel_ends_it() -> None:
    stalled = sock(
        "ESTAB",
        "10.0.0.5:45000",
        "10.3.3.3:443",
        pids=(50,),
        send_queue=1000,
        timer=TimerKind.RETRANSMIT,
        timer_seconds=1.5,
        retransmits=3,
        tcp_info=TcpInfo(rto_us=1_600_000),
    )
    snap = snapshot(stalled, processes=[process(50, "node")], sysctls=Sysctls(tcp_retries2=15))
    finding = codes(diagnose(snap))["established-peer-unreachable"]
    left = stalled_seconds_left(15, 3, 1.6, 1.5)
    assert evidence(finding)["ends_in_s"] == round(left, 1)
    # Timeouts of 0.2 s doubling to the 120 s cap: the firing that ends it comes 924.6 s after
    # the first send. The next firing, 1.5 s from now, is the fourth, 3.0 s after it.
    assert left == pytest.approx(924.6 - (3.0 - 1.5), abs=0.01)
    assert "the kernel ends them in about 923 s (about 15 min) unless an ACK arrives" in (
        finding.summary
    )


def _firings_walked(retries2: int, retransmits: int, rto: float, timer_left: float) -> float:
    """stalled_seconds_left as it was first written, a firing at a time: the reference for
    small counts."""
    retransmits = max(retransmits, 0)
    budget = retransmission_budget(retries2, 0.2)
    timeout = max(rto / (1 << min(retransmits, 30)), 0.1)
    elapsed = 0.0
    for _ in range(retransmits + 1):
        elapsed += timeout
        timeout = min(timeout * 2, 120.0)
    left = timer_left
    while elapsed < budget or retransmits == 0:
        elapsed += timeout
        left += timeout
        timeout = min(timeout * 2, 120.0)
        retransmits += 1
    return round(left, 3)


def test_the_end_counted_equals_the_end_walked_firing_by_firing() -> None:
    grid = itertools.product(
        (-2, 0, 1, 3, 8, 15, 40),
        (-1, 0, 1, 2, 3, 5, 9, 16, 30, 200),
        (0.0, 0.001, 0.2, 0.8, 1.6, 60.0, 120.0, 500.0),
        (0.0, 0.5, 119.0),
    )
    for args in grid:
        assert stalled_seconds_left(*args) == _firings_walked(*args), args


def test_the_widest_retransmission_count_a_snapshot_may_hold_is_answered_at_once() -> None:
    """A snapshot may say 4,294,967,295 retransmissions (the field's width) and as many
    retries: the end is counted, not walked a firing at a time (which hung the diagnosis)."""
    stalled = sock(
        "ESTAB",
        "10.0.0.5:45000",
        "10.3.3.3:443",
        pids=(50,),
        send_queue=1000,
        timer=TimerKind.RETRANSMIT,
        timer_seconds=1.5,
        retransmits=U32_MAX,
        tcp_info=TcpInfo(rto_us=U32_MAX),
    )
    snap = snapshot(stalled, processes=[process(50, "node")], sysctls=Sysctls(tcp_retries2=15))
    finding = codes(diagnose(snap))["established-peer-unreachable"]
    # Far past the 924.6 s budget already: the next firing, 1.5 s from now, ends it.
    assert evidence(finding)["ends_in_s"] == 1.5
    # As many retries as retransmissions: the budget (~5e11 s) is one firing ahead of the
    # elapsed time, as it is with a handful (retries 15, 15 timeouts so far: 120 s more).
    assert stalled_seconds_left(U32_MAX, U32_MAX, 120.0, 1.0) == 121.0
    assert stalled_seconds_left(15, 15, 120.0, 1.0) == _firings_walked(15, 15, 120.0, 1.0) == 121.0
    # The docstring's socket (firings at 0.2, 0.6, 1.4 s, now 0.9 s) under that many retries:
    # the firing that ends it lands on the budget.
    budget = retransmission_budget(U32_MAX, 0.2)
    assert stalled_seconds_left(U32_MAX, 2, 0.8, 0.5) == pytest.approx(budget - 0.9, abs=0.01)


def test_without_the_timer_the_end_is_the_bound() -> None:
    stalled = sock("ESTAB", "10.0.0.5:45000", "10.3.3.3:443", send_queue=1000, retransmits=5)
    finding = codes(diagnose(snapshot(stalled)))["established-peer-unreachable"]
    assert "ends_in_s" not in evidence(finding)
    assert "after at least 924 s (about 15 min) from the first unanswered send" in finding.summary


# --- idle connections ---------------------------------------------------------------------------


def idle_sock(port: int, idle_ms: int, **fields: Any) -> Any:
    info = TcpInfo(last_data_sent_ms=idle_ms, last_data_recv_ms=idle_ms, last_ack_recv_ms=idle_ms)
    fields.setdefault("timer", TimerKind.NONE)
    return sock("ESTAB", f"10.0.0.5:{port}", "10.7.7.7:6379", pids=(40,), tcp_info=info, **fields)


def test_unanswered_keepalive_probes_end_at_the_predicted_time() -> None:
    probing = idle_sock(
        41000,
        9_000_000,
        timer=TimerKind.KEEPALIVE,
        timer_seconds=30.0,
        probes=2,
        send_queue=0,
        recv_queue=0,
    )
    snap = snapshot(
        probing,
        processes=[process(40, "app")],
        sysctls=Sysctls(tcp_keepalive_probes=9, tcp_keepalive_intvl=75),
    )
    finding = codes(diagnose(snap))["established-keepalive-unanswered"]
    assert evidence(finding)["ends_in_s"] == 30.0 + 7 * 75
    assert "keepalive ends them in about 555 s (about 9 min) unless the peer answers" in (
        finding.summary
    )
    assert not any("assumed" in text for text in finding.unchecked)


def test_idle_without_keepalive_is_information_past_the_threshold_only() -> None:
    snap = snapshot(
        idle_sock(41000, 3_599_000, send_queue=0, recv_queue=0),
        idle_sock(41001, 3_600_000, send_queue=0, recv_queue=0),
        idle_sock(41002, 9_000_000, send_queue=0, recv_queue=0, timer=TimerKind.KEEPALIVE),
        processes=[process(40, "app")],
    )
    finding = codes(diagnose(snap))["established-idle-no-keepalive"]
    assert finding.severity is Severity.INFO
    assert finding.count == 1  # the one at the hour; not the one short of it, nor keepalive's
    assert finding.subject.pids == (40,)


def test_without_tcp_info_idleness_is_not_judged() -> None:
    quiet = sock("ESTAB", "10.0.0.5:41000", "10.7.7.7:6379", timer=TimerKind.NONE, send_queue=0)
    assert diagnose(snapshot(quiet)) == []


# --- segments dropped on arrival ----------------------------------------------------------------


def test_socket_drops_are_a_finding_per_holder_with_the_counters_since_boot() -> None:
    snap = snapshot(
        sock("ESTAB", "10.0.0.5:50000", "10.9.9.9:9092", pids=(30,), drops=7, recv_queue=4000),
        sock("ESTAB", "10.0.0.5:50001", "10.9.9.9:9092", pids=(30,), drops=0),
        sock("ESTAB", "10.0.0.5:50002", "10.9.9.9:9092", pids=(31,), drops=None),
        counters={"TcpExt.TCPRcvQDrop": 0},
        processes=[process(30, "sink")],
    )
    (finding,) = [f for f in diagnose(snap) if f.code == "receive-drops"]
    assert (finding.severity, finding.count, finding.subject.pid) == (Severity.INFO, 1, 30)
    assert evidence(finding)["drops"] == 7
    assert evidence(finding)["TCPRcvQDrop"] == 0
    assert "since they opened" in finding.summary


def test_counters_alone_say_since_boot_and_nothing_without_drops() -> None:
    (finding,) = [
        f
        for f in diagnose(snapshot(counters={"TcpExt.TCPBacklogDrop": 4, "TcpExt.TCPRcvQDrop": 1}))
        if f.code == "receive-drops"
    ]
    assert finding.summary.startswith("Since boot the kernel dropped 5 arriving segments")
    quiet = snapshot(counters={"TcpExt.TCPBacklogDrop": 0, "TcpExt.TCPRcvQDrop": 0})
    assert "receive-drops" not in codes(diagnose(quiet))


def test_a_series_replaces_since_they_opened_by_what_rose_during_it() -> None:
    def at(step: int, drops: int, counter: int) -> Snapshot:
        one = sock("ESTAB", "10.0.0.5:50000", "10.9.9.9:9092", pids=(30,), drops=drops, inode=9)
        return replace(
            snapshot(one, counters={"TcpExt.TCPRcvQDrop": counter}),
            host=replace(snapshot().host, taken_at=10.0 * step),
        )

    findings, _ = diagnose_series([at(0, 7, 0), at(1, 19, 0)])
    found = codes(findings)
    assert "receive-drops" not in found
    assert (
        found["receive-drops-rising"].count,
        evidence(found["receive-drops-rising"])["drops"],
    ) == (
        1,
        "+12",
    )
    # Drops that did not rise: the single look's finding stands.
    steady = codes(diagnose_series([at(0, 7, 0), at(1, 7, 0)])[0])
    assert "receive-drops" in steady and "receive-drops-rising" not in steady
    # Only the counter rose (a source without per-socket drops): a host finding.
    (host,) = [
        f
        for f in diagnose_series([at(0, 7, 3), at(1, 7, 9)])[0]
        if f.code == "receive-drops-rising"
    ]
    assert host.subject.pid is None and evidence(host)["TCPRcvQDrop"] == "+6"
    # ... and the socket's own since-it-opened finding stands beside it.
    assert "receive-drops" in codes(diagnose_series([at(0, 7, 3), at(1, 7, 9)])[0])


def test_a_listeners_drops_are_dropped_handshakes_shown_on_its_queue_finding() -> None:
    # On a listener the kernel's sk_drops counts handshakes dropped at a full accept queue
    # (tcp_listendrop), not data: they belong to the accept-queue finding, never to
    # receive-drops' "receive buffer was full".
    snap = snapshot(
        listener("127.0.0.1:8080", queued=5, backlog=4, pids=(30,), drops=12),
        processes=[process(30, "slow")],
    )
    found = codes(diagnose(snap))
    assert "receive-drops" not in found
    assert evidence(found["listen-queue-full"])["handshakes_dropped"] == 12
    assert found["listen-queue-full"].subject.pids == (30,)


def test_a_listeners_drops_never_rise_into_receive_drops_rising() -> None:
    def at(step: int, drops: int) -> Snapshot:
        one = listener("127.0.0.1:8080", queued=5, backlog=4, pids=(30,), drops=drops, inode=9)
        return replace(snapshot(one), host=replace(snapshot().host, taken_at=10.0 * step))

    findings, _ = diagnose_series([at(0, 3), at(1, 40)])
    found = codes(findings)
    assert "receive-drops" not in found and "receive-drops-rising" not in found
    assert evidence(found["listen-queue-full"])["handshakes_dropped"] == 40
