"""Handshakes: SYN_RECV without final ACKs, SYN_SENT without answers."""

from __future__ import annotations

from tcphealth.diagnose import diagnose
from tcphealth.model import (
    Blame,
    Finding,
    Severity,
    Socket,
    SubjectKind,
    Sysctls,
    TcpState,
    TimerKind,
)
from tests.builders import listener, many, process, snapshot, sock


def by_code(findings: list[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def syn_recv(count: int, port: int, sources: int) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            "SYN-RECV",
            f"203.0.113.5:{port}",
            f"198.51.{i % sources // 250}.{i % sources % 250}:{1024 + i}",
            inode=0,
            retransmits=2,
        ),
    )


def test_many_syn_recv_on_a_listener_with_room_are_missing_final_acks() -> None:
    snap = snapshot(
        listener("0.0.0.0:443", 3, 4096, pids=(80,)),
        syn_recv(900, 443, sources=700),
        processes=[process(80, "nginx")],
        sysctls=Sysctls(tcp_syncookies=1, tcp_synack_retries=5),
        counters={"TcpExt.SyncookiesSent": 4400, "TcpExt.TCPReqQFullDrop": 12},
    )
    findings = diagnose(snap)
    assert [f.code for f in findings] == ["syn-recv-no-final-ack"]
    finding = findings[0]
    assert finding.severity is Severity.WARNING  # 64 <= 900 < 1024
    assert finding.blame is Blame.REMOTE_PEER
    assert finding.state is TcpState.SYN_RECV
    assert finding.subject.kind is SubjectKind.LISTENER
    assert (finding.subject.pid, finding.subject.endpoint) == (80, "0.0.0.0:443")
    assert finding.count == 900
    assert "from 700 client addresses" in finding.summary
    assert "syncookies are on" in finding.summary
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["SyncookiesSent"] == 4400
    assert evidence["TCPReqQFullDrop"] == 12
    assert evidence["tcp_syncookies"] == 1
    assert evidence["synack_retransmitted"] == 900
    assert finding.unchecked == ()


def test_syncookies_off_is_said() -> None:
    snap = snapshot(
        listener("0.0.0.0:443", 0, 128),
        syn_recv(64, 443, sources=64),
        sysctls=Sysctls(tcp_syncookies=0),
    )
    (finding,) = by_code(diagnose(snap), "syn-recv-no-final-ack")
    assert "syncookies are off" in finding.summary


def test_syn_recv_on_a_full_listener_is_left_to_the_overflow_finding() -> None:
    snap = snapshot(listener("0.0.0.0:443", 129, 128, pids=(80,)), syn_recv(300, 443, sources=3))
    findings = diagnose(snap)
    assert [f.code for f in findings] == ["listen-queue-full"]
    assert "300 SYN_RECV" in findings[0].summary


def test_syn_recv_with_unknown_backlog_says_overflow_was_not_excluded() -> None:
    snap = snapshot(listener("0.0.0.0:443", 10, None), syn_recv(100, 443, sources=90))
    findings = diagnose(snap)
    (finding,) = by_code(findings, "syn-recv-no-final-ack")
    assert any("accept-queue overflow instead" in u for u in finding.unchecked)
    # The listener itself: its queue is non-empty and SYN_RECV sit on it -> unchecked info.
    (listener_finding,) = by_code(findings, "listen-backlog-unknown")
    assert listener_finding.severity is Severity.INFO


def test_a_few_syn_recv_are_normal() -> None:
    snap = snapshot(listener("0.0.0.0:443", 0, 128), syn_recv(20, 443, sources=20))
    assert diagnose(snap) == []


def syn_sent(count: int, remote: str, pid: int = 4100, retransmits: int | None = 3) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            "SYN-SENT",
            f"10.0.0.1:{45000 + i}",
            remote,
            pids=(pid,),
            send_queue=1,
            timer=None if retransmits is None else TimerKind.RETRANSMIT,
            retransmits=retransmits,
        ),
    )


def test_syn_sent_with_retransmits_grouped_per_destination_blames_the_peer() -> None:
    snap = snapshot(
        syn_sent(4, "10.20.0.9:9100"),
        syn_sent(60, "10.20.0.10:9100"),
        processes=[process(4100, "prometheus")],
        sysctls=Sysctls(tcp_syn_retries=6),
        counters={"TcpExt.TCPSynRetrans": 812},
    )
    findings = by_code(diagnose(snap), "syn-sent-unanswered")
    assert [(f.subject.endpoint, f.count, f.severity) for f in findings] == [
        ("10.20.0.10:9100", 60, Severity.CRITICAL),
        ("10.20.0.9:9100", 4, Severity.WARNING),
    ]
    finding = findings[1]
    assert finding.blame is Blame.REMOTE_PEER
    assert finding.subject.kind is SubjectKind.PEER
    assert (finding.subject.pid, finding.subject.process) == (4100, "prometheus")
    assert finding.summary.startswith("pid 4100 (prometheus) cannot reach 10.20.0.9:9100")
    assert "127 s" in finding.summary
    assert finding.next_steps[0] == "ss -tnpo state syn-sent dst 10.20.0.9 '( dport = :9100 )'"
    assert {e.name: e.value for e in finding.evidence}["TCPSynRetrans"] == 812


def test_syn_sent_give_up_time_counts_linear_syn_timeouts() -> None:
    # With tcp_syn_linear_timeouts the kernel resends more SYNs than tcp_syn_retries and ends
    # the attempt at 131 s, not 127 s (tests/test_live_syn_schedule.py measures the schedule).
    snap = snapshot(
        syn_sent(4, "10.20.0.9:9100", retransmits=8),
        processes=[process(4100, "prometheus")],
        sysctls=Sysctls(tcp_syn_retries=6, tcp_syn_linear_timeouts=4),
    )
    (finding,) = by_code(diagnose(snap), "syn-sent-unanswered")
    assert "131 s" in finding.summary and "127 s" not in finding.summary
    evidence = {e.name: (e.value, e.detail) for e in finding.evidence}
    assert evidence["max_retransmits"] == (8, "SYNs resent")
    assert evidence["tcp_syn_retries"] == (6, "connect() fails after 131 s (about 2 min)")
    assert evidence["tcp_syn_linear_timeouts"] == (
        4,
        "10 SYNs resent before it fails, the first 5 one second apart",
    )
    # A kernel without the setting, or with it at 0: the doubling schedule, no such evidence.
    for linear in (None, 0):
        plain = snapshot(
            syn_sent(4, "10.20.0.9:9100", retransmits=5),
            sysctls=Sysctls(tcp_syn_retries=6, tcp_syn_linear_timeouts=linear),
        )
        (finding,) = by_code(diagnose(plain), "syn-sent-unanswered")
        names = [e.name for e in finding.evidence]
        assert "tcp_syn_linear_timeouts" not in names
        assert "127 s" in finding.summary


def test_fresh_syn_sent_is_not_a_finding() -> None:
    assert diagnose(snapshot(syn_sent(50, "10.20.0.9:443", retransmits=0))) == []
    assert diagnose(snapshot(syn_sent(50, "10.20.0.9:443", retransmits=1))) == []


def test_syn_sent_to_a_full_local_listener_blames_that_listener() -> None:
    snap = snapshot(
        listener("0.0.0.0:11211", 1025, 1024, pids=(600,)),
        syn_sent(30, "127.0.0.1:11211", pid=700),
        processes=[process(600, "memcached"), process(700, "api")],
        counters={"TcpExt.ListenOverflows": 99},
    )
    findings = diagnose(snap)
    (finding,) = by_code(findings, "syn-sent-to-full-listener")
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.kind is SubjectKind.LISTENER
    assert (finding.subject.pid, finding.subject.process) == (600, "memcached")
    assert finding.subject.endpoint == "0.0.0.0:11211"
    assert finding.count == 30
    assert "pid 700 (api) cannot connect to 127.0.0.1:11211 on this same host" in finding.summary
    assert not by_code(findings, "syn-sent-unanswered")
    assert by_code(findings, "listen-queue-full")


def test_syn_sent_to_a_host_address_with_a_full_listener_uses_the_local_address() -> None:
    # Not loopback: 10.0.0.1 is local because this host's own sockets use it.
    snap = snapshot(
        listener("10.0.0.1:8080", 129, 128, pids=(1,)),
        syn_sent(2, "10.0.0.1:8080", pid=2),
    )
    (finding,) = by_code(diagnose(snap), "syn-sent-to-full-listener")
    assert finding.subject.endpoint == "10.0.0.1:8080"


def test_syn_sent_to_a_local_listener_with_room_stays_unanswered() -> None:
    snap = snapshot(listener("0.0.0.0:8080", 0, 128), syn_sent(2, "127.0.0.1:8080"))
    (finding,) = by_code(diagnose(snap), "syn-sent-unanswered")
    assert {e.name: e.value for e in finding.evidence}["local_listener"] == "0.0.0.0:8080"


def test_syn_sent_without_retransmit_information_is_info_and_unchecked() -> None:
    (finding,) = diagnose(snapshot(syn_sent(2, "10.1.1.1:80", retransmits=None)))
    assert finding.code == "syn-sent-unconfirmed"
    assert finding.severity is Severity.INFO
    assert finding.count == 2
    assert finding.unchecked == (
        "whether these 2 attempts are stuck or just starting: the source has no retransmit "
        "count or timer for them",
    )
