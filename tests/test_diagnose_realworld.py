"""Incidents with a known cause (SOURCES.md section b), rebuilt by hand from their numbers.

The text parsers that will read those files come later; these snapshots hold what the files
show, and each test asserts the verdict the incident's authors reached.
"""

from __future__ import annotations

import functools

from tcphealth.diagnose import diagnose
from tcphealth.model import (
    Blame,
    OwnerSource,
    Severity,
    Snapshot,
    SubjectKind,
    Sysctls,
    TcpState,
    TimerKind,
)
from tests.builders import listener, many, process, snapshot, sock

# -- moooofly-lls_k8s-node_ss_kube-proxy-accept-queue-full_closewait-no-owner.txt ------------
# `ss -nltp`: kube-proxy (pid 1448) NodePort listeners, many at Recv-Q 129 / Send-Q 128.
# `ss -antp | grep 30720`: 100 CLOSE-WAIT rows with no users:(), Recv-Q from 1 to 103876.
# sysctls recorded in the file: somaxconn 128, tcp_abort_on_overflow 0, tcp_syncookies 1.
# netstat -st elsewhere: 30833253 times the listen queue of a socket overflowed.
KUBE_PROXY_FULL_PORTS = (30720, 31425, 30914, 30563, 31493, 31591, 32522)
KUBE_PROXY_PARTIAL = {31460: 3, 32420: 74, 30217: 24, 32426: 82}
RECV_Q_SAMPLES = (746, 775, 2963, 705, 748, 1, 457, 439, 103876, 53818, 32480, 86310, 64618)


def kube_proxy_node() -> Snapshot:
    listeners = [listener(f"[::]:{port}", 129, 128, pids=(1448,)) for port in KUBE_PROXY_FULL_PORTS]
    listeners += [
        listener(f"[::]:{port}", queued, 128, pids=(1448,))
        for port, queued in KUBE_PROXY_PARTIAL.items()
    ]
    close_wait = many(
        100,
        lambda i: sock(
            "CLOSE-WAIT",
            "::ffff:172.1.57.200:30720",
            f"::ffff:172.31.{3 if i % 3 else 12}.{170 if i % 3 else 249}:{36800 + i}",
            recv_queue=RECV_Q_SAMPLES[i % len(RECV_Q_SAMPLES)],
            send_queue=0,
            # ss -antp printed no users:() for them: the source looked and found no owner.
            owner=OwnerSource.NONE,
        ),
    )
    return snapshot(
        listeners,
        close_wait,
        many(16, lambda i: sock("ESTAB", "172.1.57.200:22", f"172.31.0.5:{50000 + i}")),
        processes=[process(1448, "kube-proxy")],
        sysctls=Sysctls(
            somaxconn=128, tcp_abort_on_overflow=0, tcp_synack_retries=5, tcp_syncookies=1
        ),
        counters={"TcpExt.ListenOverflows": 30833253},
    )


def test_kube_proxy_top_finding_is_the_listener_not_accepting() -> None:
    findings = diagnose(kube_proxy_node())
    top = findings[0]
    assert top.code == "listen-queue-full"
    assert top.severity is Severity.CRITICAL
    assert top.blame is Blame.LOCAL_APPLICATION
    assert top.subject.kind is SubjectKind.LISTENER
    assert (top.subject.pid, top.subject.process) == (1448, "kube-proxy")
    assert top.count == 129
    assert {e.name: e.value for e in top.evidence}["ListenOverflows"] == 30833253
    # The listener on the port with the CLOSE_WAIT explains them.
    port_30720 = next(
        f for f in findings if f.code == "listen-queue-full" and f.subject.endpoint == "[::]:30720"
    )
    assert {e.name: e.value for e in port_30720.evidence}["close_wait_unaccepted"] == 100
    assert "not a SYN flood or a close() leak" in port_30720.summary


def test_kube_proxy_close_wait_is_unaccepted_not_a_leak() -> None:
    findings = diagnose(kube_proxy_node())
    codes = [f.code for f in findings]
    # Every full listener is named; the one with the CLOSE_WAIT carries them.
    assert codes.count("listen-queue-full") == len(KUBE_PROXY_FULL_PORTS)
    unaccepted = [f for f in findings if f.code == "close-wait-unaccepted"]
    assert len(unaccepted) == 1
    finding = unaccepted[0]
    assert finding.count == 100
    assert finding.severity is Severity.CRITICAL
    assert finding.subject.kind is SubjectKind.LISTENER
    assert finding.subject.pid == 1448
    assert "not a close() leak" in finding.summary
    # No process is accused of a close() leak, and nothing blames the peers.
    leak_codes = {"close-wait-not-closed", "close-wait-not-reading", "close-wait-unread-data"}
    assert not leak_codes & set(codes)
    assert "close-wait-owner-unknown" not in codes
    assert all(f.blame is Blame.LOCAL_APPLICATION for f in findings)
    # 74/128 and 82/128 are below 80 % of the backlog: no noise for them.
    assert not any(f.subject.endpoint == "[::]:32420" for f in findings)


# -- moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt --------------------
# Listener 31493 at 129/128 (kube-proxy pid 1515) with 12 SYN-RECV and 4 CLOSE-WAIT, no owner.


def test_syn_recv_on_a_full_listener_is_overflow_not_a_syn_flood() -> None:
    snap = snapshot(
        listener("[::]:31493", 129, 128, pids=(1515,)),
        many(
            12,
            lambda i: sock(
                "SYN-RECV",
                "::ffff:172.1.52.100:31493",
                f"::ffff:172.1.42.207:{35000 + i}",
                recv_queue=0,
                send_queue=0,
                inode=0,
            ),
        ),
        many(
            4,
            lambda i: sock(
                "CLOSE-WAIT",
                "::ffff:172.1.52.100:31493",
                f"::ffff:172.1.61.192:{64900 + i}",
                recv_queue=1,
                send_queue=0,
                owner=OwnerSource.NONE,
            ),
        ),
        processes=[process(1515, "kube-proxy")],
        sysctls=Sysctls(somaxconn=128, tcp_syncookies=1),
    )
    findings = diagnose(snap, None)
    assert [f.code for f in findings] == ["listen-queue-full", "close-wait-unaccepted"]
    top = findings[0]
    assert top.subject.pid == 1515 and top.subject.endpoint == "[::]:31493"
    assert {e.name: e.value for e in top.evidence}["syn_recv"] == 12
    assert "12 SYN_RECV and 4 CLOSE_WAIT" in top.summary
    assert not any(f.code.startswith("syn-recv") for f in findings)


# -- moooofly-lls_tengine_netstat-ss_timewait-pinned-65536-tw_buckets_kafka9092.txt -----------
# TIME_WAIT pinned at 65536 = tcp_max_tw_buckets; ip_local_port_range 32768 61000 (28233
# ports by the range's own count; the write-up says 28232). Kafka brokers :9092 took 17264,
# 17268 and 17968 TIME_WAIT from 172.31.3.170.
KAFKA = {"172.31.1.240": 17264, "172.31.15.64": 17268, "172.31.2.205": 17968}


@functools.cache  # 65,536 sockets: build once for both tests
def tengine_proxy() -> Snapshot:
    sockets = []
    port = 32768
    for broker, count in KAFKA.items():
        for _ in range(count):
            sockets.append(
                sock(
                    "TIME-WAIT",
                    f"172.31.3.170:{port}",
                    f"{broker}:9092",
                    inode=0,
                    timer=TimerKind.TIME_WAIT,
                )
            )
            port = 32768 + (port - 32768 + 1) % 28233
    # The rest of the 65536: clients whose connections tengine (port 80) closed first.
    rest = 65536 - len(sockets)
    sockets += many(
        rest,
        lambda i: sock(
            "TIME-WAIT",
            "172.31.3.170:80",
            f"10.0.{i // 60000}.{(i // 250) % 240 + 1}:{1024 + i % 60000}",
            inode=0,
        ),
    )
    return snapshot(
        sockets,
        sysctls=Sysctls(
            tcp_max_tw_buckets=65536, ip_local_port_range=(32768, 61000), tcp_tw_reuse=0
        ),
        counters={"TcpExt.TCPTimeWaitOverflow": 1523, "sockstat.TCP.tw": 65536},
    )


def test_tengine_time_wait_at_tcp_max_tw_buckets_is_a_critical_kernel_limit() -> None:
    findings = diagnose(tengine_proxy())
    top = findings[0]
    assert top.code == "time-wait-bucket-limit"
    assert top.severity is Severity.CRITICAL
    assert top.blame is Blame.KERNEL_LIMIT
    assert top.subject.kind is SubjectKind.HOST
    assert top.count == 65536
    assert "ceiling" in top.summary
    assert "TCPTimeWaitOverflow 1,523" in top.summary
    evidence = {e.name: e.value for e in top.evidence}
    assert evidence["tcp_max_tw_buckets"] == 65536
    assert evidence["TCPTimeWaitOverflow"] == 1523
    assert evidence["tcp_tw_reuse"] == 0
    # The side that closes first is named: this host, as kafka's client, on 52,500 of them.
    assert "as the client, on 52,500" in top.summary


def test_tengine_kafka_port_usage_is_a_warning_per_broker_not_exhaustion() -> None:
    findings = diagnose(tengine_proxy())
    per_broker = [f for f in findings if f.code == "time-wait-ports-exhausting"]
    assert sorted(str(f.subject.endpoint) for f in per_broker) == sorted(f"{b}:9092" for b in KAFKA)
    worst = max(per_broker, key=lambda f: f.count)
    assert worst.count == 17968
    assert worst.subject.endpoint == "172.31.2.205:9092"
    # 17968 of 28233 ports: over half, not yet exhausted -> warning, blamed on the client here.
    assert worst.severity is Severity.WARNING
    assert worst.blame is Blame.LOCAL_APPLICATION
    evidence = {e.name: e for e in worst.evidence}
    assert evidence["ephemeral_ports"].value == 28233
    assert evidence["port_use"].value == round(17968 / 28233, 3)
    assert evidence["tcp_tw_reuse"].value == 0
    assert worst.unchecked == ()


# -- moooofly-lls_prometheus_netstat-lsof_synsent-9100_fd-1019-of-1024.txt --------------------
# prometheus pid 22347: 571 sockets + 448 files = 1019 fds, Max open files 1024 (hard 4096).
# netstat -antp: SYN_SENT with Send-Q 1 to several node_exporter :9100 targets; netstat shows
# no timers, so the retransmit count is unknown.
SCRAPE_TARGETS = ("172.31.4.14", "172.31.1.18", "172.31.10.149")


def prometheus_server() -> Snapshot:
    syn_sent = [
        sock(
            "SYN-SENT",
            f"172.31.4.6:{54124 + i}",
            f"{target}:9100",
            send_queue=1,
            recv_queue=0,
            pids=(22347,),
        )
        for i, target in enumerate(SCRAPE_TARGETS)
    ]
    established = many(
        568,
        lambda i: sock(
            "ESTAB",
            f"172.31.4.6:{40000 + i}",
            f"172.31.{i % 200}.{i // 200 + 1}:9100",
            send_queue=0,
            recv_queue=0,
            pids=(22347,),
        ),
    )
    return snapshot(
        listener("[::]:9090", 0, 128, pids=(22347,)),
        syn_sent,
        established,
        sock(
            "ESTAB",
            "172.31.4.6:22",
            "172.31.10.66:52562",
            send_queue=356,
            recv_queue=0,
            pids=(13091,),
        ),
        processes=[
            process(22347, "prometheus", open_fds=1019, soft_limit=1024, hard_limit=4096),
            process(13091, "sshd", open_fds=12, soft_limit=1024),
        ],
    )


def test_prometheus_fd_limit_is_the_top_critical_finding() -> None:
    findings = diagnose(prometheus_server())
    top = findings[0]
    assert top.code == "fd-limit-near"
    assert top.severity is Severity.CRITICAL
    assert top.subject.kind is SubjectKind.PROCESS
    assert (top.subject.pid, top.subject.process) == (22347, "prometheus")
    assert top.count == 572  # sockets it holds in the snapshot (listener included)
    assert "1,019 of its 1,024 file descriptors open (99.5%)" in top.summary
    assert {e.name: e.value for e in top.evidence}["fd_hard_limit"] == 4096
    assert "cat /proc/22347/limits   # Max open files" in top.next_steps
    assert sum(f.severity is Severity.CRITICAL for f in findings) == 1


def test_prometheus_syn_sent_to_9100_is_secondary_per_target() -> None:
    findings = diagnose(prometheus_server())
    secondary = findings[1:]
    assert [f.code for f in secondary] == ["syn-sent-unconfirmed"] * 3
    assert {f.subject.endpoint for f in secondary} == {f"{t}:9100" for t in SCRAPE_TARGETS}
    for finding in secondary:
        assert finding.severity < Severity.WARNING
        assert finding.state is TcpState.SYN_SENT
        assert finding.subject.kind is SubjectKind.PEER
        assert finding.subject.pid == 22347
        assert finding.blame is Blame.REMOTE_PEER
        assert finding.count == 1
        assert "has 1 connection attempt to" in finding.summary
        # netstat gives no retransmit count: the finding says so instead of guessing.
        assert any("no retransmit count" in u for u in finding.unchecked)


def test_prometheus_syn_sent_with_retransmits_becomes_a_warning() -> None:
    # The same targets seen by a source with timers (ss -o): SYN resent 3 times.
    snap = snapshot(
        [
            sock(
                "SYN-SENT",
                f"172.31.4.6:{54124 + i}",
                f"{t}:9100",
                send_queue=1,
                pids=(22347,),
                timer=TimerKind.RETRANSMIT,
                retransmits=3,
            )
            for i, t in enumerate(SCRAPE_TARGETS)
        ],
        processes=[process(22347, "prometheus", open_fds=1019, soft_limit=1024)],
    )
    findings = diagnose(snap)
    assert findings[0].code == "fd-limit-near"
    assert [f.code for f in findings[1:]] == ["syn-sent-unanswered"] * 3
    assert all(f.severity is Severity.WARNING for f in findings[1:])
