"""diagnose() as a whole: order, determinism, defaults, silence on a healthy host, scale."""

from __future__ import annotations

import random

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.model import OwnerSource, Severity, Socket, Sysctls, TcpInfo, TimerKind
from tests.builders import listener, many, process, snapshot, sock


def mixed_host() -> list[Socket]:
    return [
        listener("0.0.0.0:8080", 129, 128, pids=(10,)),  # CRITICAL, count 129
        *many(
            600,
            lambda i: sock(
                "CLOSE-WAIT", f"10.0.0.1:{30000 + i}", "10.0.0.9:5432", pids=(20,), recv_queue=0
            ),
        ),  # CRITICAL, count 600
        *many(
            40,
            lambda i: sock(
                "CLOSE-WAIT", f"10.0.0.1:{31000 + i}", "10.0.0.9:6379", pids=(30,), recv_queue=1
            ),
        ),  # WARNING, count 40
        *many(
            40,
            lambda i: sock(
                "FIN-WAIT-2", f"10.0.0.1:{32000 + i}", "10.0.0.8:873", pids=(40,), inode=900 + i
            ),
        ),  # WARNING, count 40 (same count: the code decides)
    ]


def test_findings_are_ordered_by_severity_then_count_then_code() -> None:
    findings = diagnose(snapshot(mixed_host(), processes=[process(p) for p in (10, 20, 30, 40)]))
    assert [(f.severity, f.count, f.code) for f in findings] == [
        (Severity.CRITICAL, 600, "close-wait-not-closed"),
        (Severity.CRITICAL, 129, "listen-queue-full"),
        (Severity.WARNING, 40, "close-wait-not-reading"),
        (Severity.WARNING, 40, "fin-wait2-held"),
    ]


def test_order_does_not_depend_on_socket_order() -> None:
    sockets = mixed_host()
    shuffled = list(sockets)
    random.Random(7).shuffle(shuffled)
    assert diagnose(snapshot(sockets)) == diagnose(snapshot(shuffled))


def test_no_thresholds_means_the_defaults() -> None:
    snap = snapshot(mixed_host())
    assert diagnose(snap) == diagnose(snap, Thresholds())


def test_a_healthy_busy_host_has_no_findings() -> None:
    snap = snapshot(
        listener("0.0.0.0:443", 2, 4096, pids=(1,)),
        listener("[::]:22", 0, 128, pids=(2,)),
        many(
            2000,
            lambda i: sock(
                "ESTAB",
                "10.0.0.1:443",
                f"10.9.{i // 250}.{i % 250}:51000",
                pids=(1,),
                recv_queue=0,
                send_queue=0,
                timer=TimerKind.KEEPALIVE,
                retransmits=0,
            ),
        ),
        many(
            3000,
            lambda i: sock(
                "TIME-WAIT",
                "10.0.0.1:443",
                f"10.9.{i // 250}.{i % 250}:52000",
                inode=0,
                timer=TimerKind.TIME_WAIT,
            ),
        ),
        many(
            5,
            # A live look (tcp_info): closed by the database 2 s ago, a moment before close().
            lambda i: sock(
                "CLOSE-WAIT",
                f"10.0.0.1:{33000 + i}",
                "10.0.0.9:5432",
                pids=(1,),
                recv_queue=0,
                tcp_info=TcpInfo(last_ack_recv_ms=2_000),
            ),
        ),
        many(
            3,
            lambda i: sock(
                "SYN-SENT",
                f"10.0.0.1:{34000 + i}",
                "10.0.0.9:5432",
                pids=(1,),
                timer=TimerKind.RETRANSMIT,
                retransmits=0,
            ),
        ),
        many(2, lambda i: sock("SYN-RECV", "10.0.0.1:443", f"10.8.0.1:{35000 + i}", inode=0)),
        many(
            4,
            lambda i: sock(
                "FIN-WAIT-1",
                f"10.0.0.1:{36000 + i}",
                "10.0.0.9:5432",
                inode=0,
                timer=TimerKind.RETRANSMIT,
                retransmits=0,
            ),
        ),
        processes=[
            process(1, "nginx", open_fds=2100, soft_limit=65536),
            process(2, "sshd", open_fds=8, soft_limit=1024),
        ],
        sysctls=Sysctls(
            somaxconn=4096,
            tcp_max_tw_buckets=262144,
            ip_local_port_range=(32768, 60999),
            tcp_fin_timeout=60,
            tcp_syncookies=1,
        ),
        counters={"TcpExt.ListenOverflows": 0, "TcpExt.TCPTimeWaitOverflow": 0},
    )
    assert diagnose(snap) == []


def test_a_large_mixed_host_groups_every_concern() -> None:
    # 12,000 sockets in every state the rules group, spread over 500 processes. Speed is
    # measured by the benchmark (benchmarks/), not timed here; this checks the grouping.
    sockets: list[Socket] = [listener("0.0.0.0:80", 129, 128, pids=(9,))]
    for i in range(2000):
        port = 1024 + i % 60000
        peer = f"10.{i % 200}.{i % 250}.1"
        sockets += [
            sock("TIME-WAIT", f"10.0.0.1:{32768 + i % 28000}", f"{peer}:443", inode=0),
            sock(
                "ESTAB",
                f"10.0.0.1:{port}",
                f"{peer}:5432",
                pids=(i % 500 + 1,),
                recv_queue=0,
                send_queue=0,
            ),
            sock(
                "CLOSE-WAIT",
                f"10.0.0.1:{port}",
                f"{peer}:80",
                pids=(i % 500 + 1,),
                recv_queue=i % 3,
            ),
            sock("CLOSE-WAIT", "10.0.0.1:80", f"{peer}:{port}", inode=0),
            sock("SYN-RECV", "10.0.0.1:80", f"{peer}:{port}", inode=0),
            sock("SYN-SENT", f"10.0.0.1:{port}", f"{peer}:81", retransmits=3, pids=(7,)),
        ]
    snap = snapshot(sockets, processes=[process(p) for p in range(1, 501)])
    findings = diagnose(snap)
    codes = {f.code for f in findings}
    assert {"close-wait-unaccepted", "listen-queue-full", "syn-sent-unanswered"} <= codes


NONE = OwnerSource.NONE


def test_a_full_listener_comes_before_the_connections_queued_behind_it() -> None:
    """The accept-queue lab of the session-15 corpus (moooofly-lls, held out): a listener whose
    queue holds 2 for a backlog of 1, and the 2 queued connections the clients closed. Both
    findings are CRITICAL and count 2; the code used to break the tie, naming the CLOSE_WAIT
    symptom (close-wait-unaccepted) before its cause, the listener that does not accept."""
    sockets = [
        listener("0.0.0.0:12345", 2, 1, pids=(16430,)),
        # ss printed no users:(()) for them: read as held by none
        sock("CLOSE-WAIT", "127.0.0.1:12345", "127.0.0.1:46436", owner=NONE, recv_queue=1),
        sock("CLOSE-WAIT", "127.0.0.1:12345", "127.0.0.1:46434", owner=NONE, recv_queue=1),
    ]
    findings = diagnose(snapshot(sockets, processes=[process(16430)]))
    assert [(f.severity, f.count, f.code) for f in findings] == [
        (Severity.CRITICAL, 2, "listen-queue-full"),
        (Severity.CRITICAL, 2, "close-wait-unaccepted"),
    ]
