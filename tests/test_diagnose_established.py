"""ESTABLISHED: stalled sends, unread receive queues, zero windows; and descriptor limits."""

from __future__ import annotations

from typing import Any

from tcphealth.diagnose import diagnose
from tcphealth.model import (
    Blame,
    Severity,
    Socket,
    SubjectKind,
    Sysctls,
    TcpInfo,
    TcpState,
    TimerKind,
)
from tests.builders import many, process, snapshot, sock


def established(count: int, remote: str, pid: int = 50, **fields: Any) -> list[Socket]:
    return many(
        count,
        lambda i: sock("ESTAB", f"10.0.0.1:{45000 + i}", remote, pids=(pid,), **fields),
    )


def test_unacknowledged_data_with_retransmissions_blames_the_network() -> None:
    snap = snapshot(
        established(3, "10.3.3.3:443", send_queue=97920, timer=TimerKind.RETRANSMIT, retransmits=7),
        processes=[process(50, "node")],
        sysctls=Sysctls(tcp_retries2=15),
    )
    (finding,) = diagnose(snap)
    assert finding.code == "established-peer-unreachable"
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.NETWORK
    assert finding.state is TcpState.ESTABLISHED
    assert finding.subject.kind is SubjectKind.PEER
    assert finding.subject.endpoint == "10.3.3.3"
    assert finding.count == 3
    assert finding.summary.startswith(
        "3 connections of pid 50 (node) to 10.3.3.3 have 293,760 bytes unacknowledged"
    )
    assert "924 s" in finding.summary
    assert {e.name: e.value for e in finding.evidence}["max_retransmits"] == 7


def test_one_or_two_retransmits_are_ordinary_loss() -> None:
    snap = snapshot(
        established(5, "10.3.3.3:443", send_queue=1000, timer=TimerKind.RETRANSMIT, retransmits=2)
    )
    assert diagnose(snap) == []


def test_large_receive_queue_means_the_local_application_is_not_reading() -> None:
    snap = snapshot(
        established(2, "10.4.4.4:9092", pid=61, recv_queue=4_000_000, send_queue=0),
        established(5, "10.4.4.4:9092", pid=61, recv_queue=10, send_queue=0),
        processes=[process(61, "consumer")],
    )
    (finding,) = diagnose(snap)
    assert finding.code == "established-not-reading"
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.kind is SubjectKind.PROCESS
    assert (finding.subject.pid, finding.subject.process) == (61, "consumer")
    assert finding.count == 2
    assert "8,000,000 bytes have arrived and wait unread" in finding.summary


def test_zero_window_probe_means_the_peer_is_not_reading() -> None:
    snap = snapshot(
        established(
            4,
            "10.6.6.6:80",
            send_queue=270680,
            timer=TimerKind.ZERO_WINDOW_PROBE,
            retransmits=0,
            probes=3,
        )
    )
    (finding,) = diagnose(snap)
    assert finding.code == "established-peer-not-reading"
    assert finding.blame is Blame.REMOTE_PEER
    assert finding.subject.endpoint == "10.6.6.6"
    assert finding.count == 4
    # One look cannot tell how long the window has been closed (issue 21): no "stopped" yet.
    assert "the application at 10.6.6.6 has not read what it was sent" in finding.summary
    assert "stopped" not in finding.summary
    assert [item.split(":")[0] for item in finding.unchecked] == [
        "whether the receiver stopped reading or is only behind"
    ]
    # No tcp_info sending times: nothing said about them.
    assert not {"rwnd_limited", "sndbuf_limited"} & {e.name for e in finding.evidence}


def test_tcp_info_says_how_much_of_the_sending_time_each_limit_took() -> None:
    times = TcpInfo(busy_time_us=2_000_000, rwnd_limited_us=1_500_000, sndbuf_limited_us=20_000)
    snap = snapshot(
        established(
            3,
            "10.6.6.6:80",
            send_queue=270680,
            timer=TimerKind.ZERO_WINDOW_PROBE,
            probes=3,
            tcp_info=times,
        ),
        # An older kernel's tcp_info, without the times: not counted in the shares.
        established(
            1,
            "10.6.6.6:80",
            send_queue=1,
            timer=TimerKind.ZERO_WINDOW_PROBE,
            tcp_info=TcpInfo(rto_us=200_000),
        ),
    )
    (finding,) = diagnose(snap)
    evidence = {e.name: (e.value, e.detail) for e in finding.evidence}
    assert evidence["rwnd_limited"] == (
        "75.0%",
        "4,500 ms held back by the peer's window, of 6,000 ms spent sending, over 3 connections",
    )
    assert evidence["sndbuf_limited"] == (
        "1.0%",
        "60 ms held back by this host's send buffer, of 6,000 ms spent sending, over 3 connections",
    )


def test_healthy_established_connections_make_no_findings() -> None:
    snap = snapshot(
        established(
            200,
            "10.5.5.5:5432",
            recv_queue=0,
            send_queue=0,
            timer=TimerKind.KEEPALIVE,
            retransmits=0,
        ),
        established(
            3,
            "10.5.5.6:5432",
            recv_queue=1200,
            send_queue=356,
            timer=TimerKind.RETRANSMIT,
            retransmits=0,
        ),
        established(10, "10.5.5.7:5432"),  # psutil: nothing known about queues
        processes=[process(50, "app", open_fds=230, soft_limit=1024)],
    )
    assert diagnose(snap) == []


def test_process_near_its_descriptor_limit() -> None:
    snap = snapshot(
        established(300, "10.5.5.5:5432"),
        processes=[
            process(50, "app", open_fds=850, soft_limit=1024, hard_limit=1048576),
            process(51, "quiet", open_fds=10, soft_limit=1024),
            process(52, "unknown"),  # no fd numbers: nothing to compare, no finding
        ],
    )
    (finding,) = diagnose(snap)
    assert finding.code == "fd-limit-near"
    assert finding.severity is Severity.WARNING  # 83 %
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.state is None
    assert (finding.subject.kind, finding.subject.pid) == (SubjectKind.PROCESS, 50)
    assert finding.count == 300
    assert "850 of its 1,024 file descriptors open (83%), 300 of them TCP sockets" in (
        finding.summary
    )
    assert "up to the hard limit of 1,048,576" in finding.next_steps[-1]
