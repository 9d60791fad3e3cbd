"""TIME_WAIT: ports toward one destination, and the tcp_max_tw_buckets ceiling."""

from __future__ import annotations

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Severity, Socket, SubjectKind, Sysctls, TcpState
from tests.builders import many, process, snapshot, sock

SMALL_RANGE = (40000, 40999)  # 1,000 ephemeral ports keeps the snapshots small


def client_time_wait(count: int, remote: str, local: str = "10.0.0.1") -> list[Socket]:
    return many(
        count,
        lambda i: sock("TIME-WAIT", f"{local}:{40000 + i % 1000}", remote, inode=0),
    )


def test_time_wait_near_the_port_range_toward_one_destination() -> None:
    snap = snapshot(
        client_time_wait(950, "10.0.5.5:11211"),
        sock("ESTAB", "10.0.0.1:40999", "10.0.5.5:11211", pids=(31,)),
        processes=[process(31, "api")],
        sysctls=Sysctls(ip_local_port_range=SMALL_RANGE, tcp_tw_reuse=0),
    )
    (finding,) = diagnose(snap)
    assert finding.code == "time-wait-ports-exhausting"
    assert finding.severity is Severity.CRITICAL  # 95 % >= 90 %
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.state is TcpState.TIME_WAIT
    assert finding.subject.kind is SubjectKind.PEER
    assert finding.subject.endpoint == "10.0.5.5:11211"
    assert finding.count == 950
    assert "95% of its 1,000 ephemeral ports" in finding.summary
    assert "a client here (pid 31 (api) has open connections there) closes first" in (
        finding.summary
    )
    assert "reuse connections" in finding.summary
    evidence = {e.name: e for e in finding.evidence}
    assert evidence["tcp_tw_reuse"].value == 0
    assert evidence["tcp_tw_reuse"].detail == "off: these ports stay taken for the full 60 s"
    assert evidence["established_client"].value == "pid 31 (api)"


def test_tw_reuse_two_helps_only_loopback() -> None:
    sysctls = Sysctls(ip_local_port_range=SMALL_RANGE, tcp_tw_reuse=2)
    (loopback,) = diagnose(
        snapshot(client_time_wait(600, "127.0.0.1:11211", "127.0.0.1"), sysctls=sysctls)
    )
    (remote,) = diagnose(snapshot(client_time_wait(600, "10.0.5.5:11211"), sysctls=sysctls))
    detail = {e.name: e.detail for e in loopback.evidence}["tcp_tw_reuse"]
    assert detail == "new outgoing connections may reuse these ports when timestamps allow"
    detail = {e.name: e.detail for e in remote.evidence}["tcp_tw_reuse"]
    assert detail == "reuse on loopback only, so not for this destination"
    assert loopback.severity is remote.severity is Severity.WARNING


def test_unknown_port_range_assumes_the_default_and_says_so() -> None:
    sockets = many(
        15000, lambda i: sock("TIME-WAIT", f"10.0.0.1:{32768 + i}", "10.0.5.5:443", inode=0)
    )
    (finding,) = diagnose(snapshot(sockets))
    assert finding.code == "time-wait-ports-exhausting"
    assert finding.severity is Severity.WARNING  # 15,000 / 28,232 = 53 %
    assert finding.unchecked == (
        "ip_local_port_range: not in the snapshot, so the Linux default 32768-60999 was assumed",
    )


def test_server_side_time_wait_does_not_use_ephemeral_ports() -> None:
    # This host (port 80) closed first on its clients: their ports, not ours, are spent.
    sockets = many(
        990, lambda i: sock("TIME-WAIT", "10.0.0.1:80", f"10.0.7.7:{40000 + i}", inode=0)
    )
    assert diagnose(snapshot(sockets, sysctls=Sysctls(ip_local_port_range=SMALL_RANGE))) == []


def test_time_wait_spread_over_destinations_is_normal() -> None:
    sockets = [
        *client_time_wait(400, "10.0.5.5:443"),
        *client_time_wait(400, "10.0.5.6:443"),
        *client_time_wait(400, "10.0.5.5:80"),
    ]
    sysctls = Sysctls(ip_local_port_range=SMALL_RANGE, tcp_max_tw_buckets=262144)
    assert diagnose(snapshot(sockets, sysctls=sysctls)) == []


def test_near_tcp_max_tw_buckets_warns_and_at_it_is_critical() -> None:
    sockets = many(
        900, lambda i: sock("TIME-WAIT", "10.0.0.1:443", f"10.8.{i // 250}.{i % 250}:5000")
    )
    near = diagnose(snapshot(sockets, sysctls=Sysctls(tcp_max_tw_buckets=1000)))
    assert [(f.code, f.severity, f.blame) for f in near] == [
        ("time-wait-bucket-limit", Severity.WARNING, Blame.KERNEL_LIMIT)
    ]
    assert "at 90% of its limit" in near[0].summary
    # Below the limit nothing skips TIME_WAIT yet: the sentence must say "once", not "so".
    assert "once it is reached, further closes skip TIME_WAIT" in near[0].summary
    assert "this host closed first on them as the server" in near[0].summary
    at = diagnose(
        snapshot(
            sockets,
            sysctls=Sysctls(tcp_max_tw_buckets=1000),
            counters={"sockstat.TCP.tw": 1000, "TcpExt.TCPTimeWaitOverflow": 40},
        )
    )
    assert [(f.code, f.severity, f.count) for f in at] == [
        ("time-wait-bucket-limit", Severity.CRITICAL, 1000)
    ]
    assert at[0].summary.startswith("TIME_WAIT is at the kernel's ceiling: 1,000 of")


def test_overflow_counter_without_the_limit_is_a_warning_with_the_gap_named() -> None:
    snap = snapshot(
        client_time_wait(10, "10.0.5.5:443"), counters={"TcpExt.TCPTimeWaitOverflow": 12}
    )
    (finding,) = diagnose(snap)
    assert (finding.code, finding.severity) == ("time-wait-bucket-limit", Severity.WARNING)
    assert finding.unchecked == (
        "tcp_max_tw_buckets: not in the snapshot, so the headroom is unknown",
    )


def test_past_overflow_below_the_limit_now_is_info() -> None:
    snap = snapshot(
        client_time_wait(10, "10.0.5.5:443"),
        sysctls=Sysctls(tcp_max_tw_buckets=180000),
        counters={"TcpExt.TCPTimeWaitOverflow": 12},
    )
    (finding,) = diagnose(snap)
    assert (finding.code, finding.severity) == ("time-wait-bucket-limit", Severity.INFO)
    assert "overflowed it 12 times since boot" in finding.summary
