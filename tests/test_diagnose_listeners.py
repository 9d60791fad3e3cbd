"""Accept queues: full, filling, and a /proc copy that cannot tell."""

from __future__ import annotations

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.shared import assess_accept_queue
from tcphealth.model import Blame, Finding, Severity, SubjectKind, Sysctls, TcpState
from tests.builders import listener, proc_copy_attribution, process, snapshot


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, [f.code for f in findings]
    return findings[0]


def test_queue_at_backlog_plus_one_is_critical_with_listen_overflows() -> None:
    snap = snapshot(
        listener("0.0.0.0:5432", 129, 128, pids=(901,)),
        processes=[process(901, "postgres")],
        sysctls=Sysctls(somaxconn=4096, tcp_abort_on_overflow=0),
        counters={"TcpExt.ListenOverflows": 5120, "TcpExt.ListenDrops": 5121},
    )
    finding = only(diagnose(snap))
    assert finding.code == "listen-queue-full"
    assert finding.severity is Severity.CRITICAL
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.state is TcpState.LISTEN
    assert finding.subject.kind is SubjectKind.LISTENER
    assert (finding.subject.pid, finding.subject.endpoint) == (901, "0.0.0.0:5432")
    assert finding.count == 129
    assert finding.summary == (
        "On 0.0.0.0:5432, pid 901 (postgres) is not accepting connections fast enough: its "
        "accept queue holds 129 for a backlog of 128, so new handshakes are dropped."
    )
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["ListenOverflows"] == 5120
    assert evidence["listen_backlog"] == 128
    assert evidence["tcp_abort_on_overflow"] == 0
    assert "strace -f -e trace=accept,accept4 -p 901   # does it call accept() at all?" in (
        finding.next_steps
    )
    assert finding.unchecked == ()


def test_queue_exactly_at_backlog_counts_as_full() -> None:
    # recv_queue >= listen_backlog: one more connection and the kernel starts dropping.
    finding = only(diagnose(snapshot(listener("[::]:443", 128, 128, pids=(1,)))))
    assert (finding.code, finding.severity) == ("listen-queue-full", Severity.CRITICAL)
    assert finding.subject.endpoint == "[::]:443"


def test_queue_over_warning_ratio_is_filling() -> None:
    finding = only(diagnose(snapshot(listener("0.0.0.0:80", 110, 128, pids=(3,)))))
    assert (finding.code, finding.severity) == ("listen-queue-filling", Severity.WARNING)
    assert finding.count == 110


def test_listen_zero_backlog_still_holds_one() -> None:
    # The lab case: `nc -l` stopped with ^Z shows Recv-Q 2 / Send-Q 1.
    finding = only(diagnose(snapshot(listener("*:12345", 2, 1, pids=(11637,)))))
    assert finding.code == "listen-queue-full"
    assert assess_accept_queue(listener("*:1", 1, 0), Sysctls()).fill == 1.0
    assert assess_accept_queue(listener("*:1", 0, 0), Sysctls()).fill == 0.0


def test_healthy_listeners_make_no_noise() -> None:
    snap = snapshot(
        listener("0.0.0.0:22", 0, 128, pids=(1,)),
        listener("0.0.0.0:80", 5, 511, pids=(2,)),
        listener("[::]:9090", None, None, pids=(3,)),  # psutil: no queues at all
    )
    assert diagnose(snap) == []


def test_proc_copy_without_backlog_proves_full_only_through_somaxconn_and_says_so() -> None:
    snap = snapshot(
        listener("0.0.0.0:30720", 129, None),
        sysctls=Sysctls(somaxconn=128),
        attribution=proc_copy_attribution(),
    )
    finding = only(diagnose(snap))
    assert (finding.code, finding.severity) == ("listen-queue-full", Severity.CRITICAL)
    assert finding.subject.pid is None
    assert "at most somaxconn 128 (backlog not reported)" in finding.summary
    assert finding.unchecked == (
        "the listen backlog of 0.0.0.0:30720: not in the source, so "
        "net.core.somaxconn (128) was used as its upper bound",
        "which process owns the listener 0.0.0.0:30720: the source does not say",
    )


def test_proc_copy_without_backlog_or_somaxconn_is_unchecked_not_guessed() -> None:
    # 130 is no usual backlog + 1 (129 is: tests/test_paste_readings.py reads it as a full
    # queue at an assumed backlog of 128, as issue #22 asks).
    snap = snapshot(listener("0.0.0.0:8080", 130, None), attribution=proc_copy_attribution())
    finding = only(diagnose(snap))
    assert finding.code == "listen-backlog-unknown"
    assert finding.severity is Severity.INFO
    assert finding.blame is Blame.NONE
    assert "could not be checked" in finding.summary
    assert any(
        "neither the backlog nor net.core.somaxconn is in the snapshot" in u
        for u in finding.unchecked
    )


def test_proc_copy_below_the_somaxconn_bound_stays_quiet_without_other_signs() -> None:
    # 100 of somaxconn 4096 proves nothing either way; nothing else points at this listener.
    snap = snapshot(listener("0.0.0.0:8080", 100, None), sysctls=Sysctls(somaxconn=4096))
    assert diagnose(snap) == []


def test_dual_stack_listener_matches_v4_mapped_connections() -> None:
    from tests.builders import sock

    index = SnapshotIndex.build(
        snapshot(
            listener("0.0.0.0:80", 0, 128),
            listener("[::]:80", 0, 128),
            listener("10.0.0.1:81", 0, 128),
        )
    )
    found = index.listener_for(sock("ESTAB", "::ffff:10.0.0.1:80", "10.0.0.2:1").local)
    assert found is not None and str(found.local) == "[::]:80"
    found = index.listener_for(sock("ESTAB", "10.0.0.1:80", "10.0.0.2:1").local)
    assert found is not None and str(found.local) == "0.0.0.0:80"
    found = index.listener_for(sock("ESTAB", "::ffff:10.0.0.1:81", "10.0.0.2:1").local)
    assert found is not None and str(found.local) == "10.0.0.1:81"
    assert index.listener_for(sock("ESTAB", "10.0.0.1:82", "10.0.0.2:1").local) is None


def test_threshold_ratio_is_configurable() -> None:
    lenient = Thresholds(accept_queue_warning_ratio=0.95, accept_queue_critical_ratio=1.5)
    (finding,) = diagnose(snapshot(listener("0.0.0.0:80", 129, 128)), lenient)
    assert (finding.code, finding.severity) == ("listen-queue-filling", Severity.WARNING)
    assert diagnose(snapshot(listener("0.0.0.0:80", 120, 128)), lenient) == []


def test_overflows_since_boot_and_no_queue_full_now_are_information_naming_short_backlogs() -> None:
    """dubbo#5168's paste: netstat -s counts 3220 overflows, `ss -lnt` shows the one listener
    empty with a backlog of 50. Before, tcphealth said "no problems found"."""
    snap = snapshot(
        listener("0.0.0.0:20880", 0, 50),
        listener("0.0.0.0:8080", 3, 4096, pids=(901,)),
        processes=[process(901, "nginx")],
        sysctls=Sysctls(somaxconn=4096),
        counters={"TcpExt.ListenOverflows": 3220, "TcpExt.ListenDrops": 3220},
    )
    finding = only(diagnose(snap))
    assert (finding.code, finding.severity, finding.blame) == (
        "listen-overflowed",
        Severity.INFO,
        Blame.NONE,
    )
    assert (finding.subject.kind, finding.state, finding.count) == (SubjectKind.HOST, None, 0)
    assert finding.summary.startswith(
        "Since boot the kernel dropped 3,220 incoming connections because a listener's accept "
        "queue was full; no queue is full or filling now"
    )
    assert "The shortest backlog listed is 50, on 0.0.0.0:20880" in finding.summary
    shown = [(e.name, e.value, e.detail) for e in finding.evidence]
    assert shown[:2] == [
        (
            "ListenOverflows",
            3220,
            "handshakes dropped since boot because a listener's accept queue was full",
        ),
        ("ListenDrops", 3220, "all drops at listeners since boot"),
    ]
    assert [(name, value) for name, value, _ in shown[2:]] == [
        ("listen_backlog", 50),
        ("listen_backlog", 4096),
        ("somaxconn", 4096),
    ]
    assert shown[2][2] == "on 0.0.0.0:20880, 0 waiting now"


def test_overflows_since_boot_are_left_to_a_full_queue_that_explains_them() -> None:
    counters = {"TcpExt.ListenOverflows": 3220}
    full = snapshot(listener("0.0.0.0:5432", 129, 128, pids=(901,)), counters=counters)
    assert [f.code for f in diagnose(full)] == ["listen-queue-full"]
    quiet = snapshot(listener("0.0.0.0:5432", 0, 128), counters={"TcpExt.ListenOverflows": 0})
    assert diagnose(quiet) == []


def test_overflows_since_boot_without_any_listener_shown_do_not_claim_no_queue_is_full() -> None:
    """A pasted `netstat -s` alone: the counter, and no listener to say whether a queue is
    full now -- unknown, not "none"."""
    snap = snapshot(counters={"TcpExt.ListenOverflows": 10625, "TcpExt.ListenDrops": 10625})
    finding = only(diagnose(snap))
    assert finding.code == "listen-overflowed"
    assert "no queue is full" not in finding.summary
    assert "the input shows no listener's queue" in finding.summary
    assert finding.unchecked[-1].startswith("whether an accept queue is full now")
